//! `truncation: "auto"`: a turn whose prompt does not fit the model's
//! context loses its conversation's oldest items — never the instructions
//! or a `system` / `developer` message — until it fits, as OpenAI
//! documents it; `disabled` (the default) sends the whole conversation,
//! and the engine refuses an overlong prompt with a 400
//! (`context_length_exceeded`).
//!
//! The prompt is measured with the model's own template and tokenizer, so
//! this applies to a model served by the local engine; a routed model's
//! upstream knows its own context and answers for itself.

use std::collections::HashSet;

use api::{ChatCompletionRequest, CreateResponseRequest, Item, Truncation};

use super::convert;
use crate::generation::chat as local_chat;
use crate::requests::{RequestContext, Service};
use crate::Result;

/// Whether `item` is kept whatever the truncation (a system or developer
/// message).
fn is_system(item: &Item) -> bool {
    matches!(item, Item::Message { role, .. } if role == "system" || role == "developer")
}

/// `all` without its first `count` droppable items (`droppable`: their
/// places), and without the outputs of calls that went with them.
fn without_oldest(all: &[Item], droppable: &[usize], count: usize) -> Vec<Item> {
    let dropped: HashSet<usize> = droppable[..count].iter().copied().collect();
    let mut kept: Vec<Item> = all
        .iter()
        .enumerate()
        .filter(|(place, _)| !dropped.contains(place))
        .map(|(_, item)| item.clone())
        .collect();
    let calls: HashSet<String> = kept
        .iter()
        .filter_map(|item| match item {
            Item::FunctionCall { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    kept.retain(|item| {
        !matches!(item, Item::FunctionCallOutput { call_id, .. } if !calls.contains(call_id))
    });
    kept
}

impl Service {
    /// The chat request of a turn whose conversation so far is `history`
    /// and whose new items are `items`, truncated as `request.truncation`
    /// says (see the module).
    pub(super) async fn fitted_chat(
        &self,
        context: &RequestContext,
        request: &CreateResponseRequest,
        history: &[Item],
        items: &[Item],
    ) -> Result<ChatCompletionRequest> {
        let full = convert::chat_request(request, history, items)?;
        if request.truncation != Some(Truncation::Auto) {
            return Ok(full);
        }
        let resolved = self.resolve(context.tenant.as_ref(), &request.model)?;
        let Some(model) = resolved.direct() else {
            return Ok(full);
        };
        let engine = &model.engine;
        let context_length = engine.info().context_length;
        let answer_room = self
            .answer_defaults()
            .max_tokens(full.max_output_tokens())
            .unwrap_or(1) as usize;
        let fits = |prompt: &[u32]| prompt.len().saturating_add(answer_room) <= context_length;
        if fits(&local_chat::prompt(engine, &resolved.model, &full).await?) {
            return Ok(full);
        }
        let mut all = history.to_vec();
        all.extend_from_slice(items);
        let droppable: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, item)| !is_system(item))
            .map(|(place, _)| place)
            .collect();
        // The newest item always stays; the fewest drops that fit win
        // (the prompt shrinks as more go: a binary search).
        let (mut low, mut high) = (1, droppable.len().saturating_sub(1));
        let mut best = None;
        while low <= high {
            let count = low + (high - low) / 2;
            let kept = without_oldest(&all, &droppable, count);
            let chat = convert::chat_request(request, &kept, &[])?;
            if fits(&local_chat::prompt(engine, &resolved.model, &chat).await?) {
                best = Some(chat);
                high = count - 1;
            } else {
                low = count + 1;
            }
        }
        // Nothing fits: the whole conversation, which the engine refuses
        // with its own `context_length_exceeded`.
        Ok(best.unwrap_or(full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_call_drops_its_output_and_keeps_system_messages() {
        let all = vec![
            Item::Message {
                id: "s".into(),
                role: "system".into(),
                status: "completed".into(),
                content: Vec::new(),
            },
            Item::user_text("old question"),
            Item::FunctionCall {
                id: "fc_1".into(),
                call_id: "call_1".into(),
                name: "f".into(),
                arguments: "{}".into(),
                status: "completed".into(),
            },
            Item::FunctionCallOutput {
                id: "fco_1".into(),
                call_id: "call_1".into(),
                output: "x".into(),
                status: "completed".into(),
            },
            Item::user_text("new question"),
        ];
        let droppable: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, item)| !is_system(item))
            .map(|(place, _)| place)
            .collect();
        assert_eq!(droppable, [1, 2, 3, 4]);
        let kept = without_oldest(&all, &droppable, 2);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(is_system(&kept[0]));
        assert_eq!(kept[1], all[4]);
    }
}
