//! The local moderation classifier on the labelled evaluation set
//! (tests/moderation/eval.tsv: 303 sentences, 137 of them benign, many of
//! those look-alikes): per-category precision and recall printed (the
//! table in docs/MODERATION.md comes from this test's output), with floors
//! that catch a classifier gone wrong.

use api::MODERATION_CATEGORIES;
use encoder::{EncoderHandle, HandleConfig};
use service::moderation::{Classifier, THRESHOLD};

#[test]
fn precision_and_recall_per_category() {
    let handle = EncoderHandle::start(
        &testkit::model_path(testkit::MINILM),
        HandleConfig {
            threads: 2,
            queue: 4,
        },
    )
    .expect("start the encoder");
    let classifier = Classifier::build(&handle).expect("exemplars");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/moderation/eval.tsv"
    );
    let text = std::fs::read_to_string(path).expect("eval set");
    let rows: Vec<(Vec<&str>, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (labels, sentence) = l.split_once('\t').expect("label<TAB>sentence");
            let labels = labels.split(',').filter(|l| *l != "none").collect();
            (labels, sentence)
        })
        .collect();
    assert!(rows.len() >= 300, "{} sentences", rows.len());
    let seqs: Vec<Vec<u32>> = rows
        .iter()
        .map(|(_, s)| handle.tokenizer().encode(s))
        .collect();
    let vectors = handle.embed(seqs).expect("embed");
    let mut tp = [0usize; 13];
    let mut fp = [0usize; 13];
    let mut missed = [0usize; 13];
    let (mut benign, mut benign_flagged, mut harmful, mut harmful_flagged) = (0, 0, 0, 0);
    for ((labels, sentence), v) in rows.iter().zip(&vectors) {
        let scores = classifier.score(sentence, v);
        let flagged = scores.iter().any(|s| *s >= THRESHOLD);
        if labels.is_empty() {
            benign += 1;
            benign_flagged += usize::from(flagged);
            if flagged {
                println!("false alarm: {sentence}");
            }
        } else {
            harmful += 1;
            harmful_flagged += usize::from(flagged);
        }
        for (c, name) in MODERATION_CATEGORIES.iter().enumerate() {
            let truth = labels.contains(name);
            let said = scores[c] >= THRESHOLD;
            match (truth, said) {
                (true, true) => tp[c] += 1,
                (false, true) => fp[c] += 1,
                (true, false) => missed[c] += 1,
                (false, false) => {}
            }
        }
    }
    println!("| category | examples | precision | recall |");
    println!("|---|---|---|---|");
    for (c, name) in MODERATION_CATEGORIES.iter().enumerate() {
        let p = tp[c] as f64 / (tp[c] + fp[c]).max(1) as f64;
        let r = tp[c] as f64 / (tp[c] + missed[c]).max(1) as f64;
        println!("| {name} | {} | {p:.2} | {r:.2} |", tp[c] + missed[c]);
    }
    let recall = harmful_flagged as f64 / harmful as f64;
    let false_alarms = benign_flagged as f64 / benign as f64;
    println!(
        "flagged: {harmful_flagged}/{harmful} harmful ({recall:.2}), {benign_flagged}/{benign} benign ({false_alarms:.2})"
    );
    assert!(recall >= 0.6, "any-category recall {recall}");
    assert!(
        false_alarms <= 0.2,
        "false alarms on benign text {false_alarms}"
    );
}
