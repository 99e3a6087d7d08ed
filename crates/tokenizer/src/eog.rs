//! Special tokens recognised by their text, as llama.cpp does when the GGUF
//! does not name them: end-of-turn / end-of-message / fill-in-the-middle ids,
//! the tokens forced to control type, and the end-of-generation set.

use std::collections::BTreeSet;

use crate::vocab::{attr, SpecialIds, Vocab};

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Texts that end generation wherever they occur in a vocabulary.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Tokens that must always render (gpt-oss), whatever their declared type.
const ALWAYS_USER_DEFINED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// Fills in the special ids the file left out, marks control-looking tokens as
/// control, and returns the end-of-generation set.
pub(crate) fn detect_specials(vocab: &mut Vocab) -> BTreeSet<u32> {
    type Slot = fn(&mut SpecialIds) -> &mut Option<u32>;
    let detectors: [(&[&str], Slot); 8] = [
        (EOT_TEXTS, |s| &mut s.eot),
        (EOM_TEXTS, |s| &mut s.eom),
        (FIM_PRE_TEXTS, |s| &mut s.fim_pre),
        (FIM_SUF_TEXTS, |s| &mut s.fim_suf),
        (FIM_MID_TEXTS, |s| &mut s.fim_mid),
        (FIM_PAD_TEXTS, |s| &mut s.fim_pad),
        (FIM_REP_TEXTS, |s| &mut s.fim_rep),
        (FIM_SEP_TEXTS, |s| &mut s.fim_sep),
    ];
    for (texts, slot) in detectors {
        if slot(&mut vocab.special).is_some() {
            continue;
        }
        // llama.cpp takes whichever candidate its hash map yields first; we take
        // the lowest id, which is the same whenever a vocabulary has only one.
        if let Some(id) = lowest_id_of(vocab, texts) {
            *slot(&mut vocab.special) = Some(id);
            mark_control(vocab, id);
        }
    }

    let mut eog = BTreeSet::new();
    let s = vocab.special;
    eog.extend([s.fim_pad, s.fim_rep, s.fim_sep].into_iter().flatten());
    for text in EOG_TEXTS {
        if let Some(id) = vocab.id(text) {
            eog.insert(id);
            mark_control(vocab, id);
        }
    }
    for text in ALWAYS_USER_DEFINED {
        if let Some(id) = vocab.id(text) {
            vocab.attrs[id as usize] = attr::USER_DEFINED;
        }
    }
    eog.extend([s.eos, s.eot, s.eom].into_iter().flatten());

    // o200k_harmony / solar-open: `<|end|>` ends a message, not generation.
    let has = |v: &Vocab, eog: &BTreeSet<u32>, t: &str| v.id(t).is_some_and(|id| eog.contains(&id));
    let has_return = has(vocab, &eog, "<|return|>");
    let has_call = has(vocab, &eog, "<|call|>") || has(vocab, &eog, "<|calls|>");
    let has_flush = has(vocab, &eog, "<|flush|>");
    if let Some(end) = vocab.id("<|end|>").filter(|id| eog.contains(id)) {
        if has_call && (has_return || has_flush) {
            eog.remove(&end);
            vocab.attrs[end as usize] = attr::USER_DEFINED;
        }
    }
    // Where `<|tool_response>` or `<|plamo:eos|>` ends turns, `</s>` is ordinary text.
    let has_marker = has(vocab, &eog, "<|tool_response>") || has(vocab, &eog, "<|plamo:eos|>");
    if let Some(s_id) = vocab.id("</s>").filter(|id| eog.contains(id)) {
        if has_marker {
            eog.remove(&s_id);
            vocab.attrs[s_id as usize] = attr::NORMAL;
        }
    }
    eog
}

fn lowest_id_of(vocab: &Vocab, texts: &[&str]) -> Option<u32> {
    texts.iter().filter_map(|t| vocab.id(t)).min()
}

fn mark_control(vocab: &mut Vocab, id: u32) {
    if let Some(a) = vocab.attrs.get_mut(id as usize) {
        *a |= attr::CONTROL;
    }
}
