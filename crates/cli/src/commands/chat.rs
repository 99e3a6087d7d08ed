//! `parlance chat`: a terminal conversation, streamed, with the history kept
//! for the session and rendered through the model's own chat template.

use std::io::{BufRead, Write};
use std::path::Path;

use engine::{ChatMessage, GenerateRequest};

use super::generate::{stream, SamplingArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Catalog name or path to a GGUF file.
    #[arg(long, default_value = catalog::CATALOG[0].name)]
    pub model: String,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let engine = crate::model_arg::start(&args.model, data_dir, args.sampling.threads)?;
    if !engine.info().has_chat_template {
        anyhow::bail!(
            "model '{}' has no chat template; use `parlance generate` for plain completions",
            args.model
        );
    }
    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &args.system {
        history.push(message("system", s));
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    eprintln!(
        "chatting with {} — /reset clears the history, /exit or Ctrl-D quits",
        args.model
    );
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.retain(|m| m.role == "system");
                eprintln!("(history cleared)");
                continue;
            }
            _ => {}
        }
        history.push(message("user", line));
        let text = engine.render_chat(&history, true)?;
        let req = GenerateRequest {
            prompt: engine.encode_prompt(&text),
            params: args.sampling.params(),
            max_tokens: Some(args.sampling.max_tokens),
            stop: args.sampling.stop.clone(),
            logprobs: None,
            ignore_eos: false,
            constraint: None,
        };
        match stream(&engine, req, &mut out) {
            Ok(reply) => history.push(message("assistant", &reply)),
            Err(e) => {
                history.pop();
                eprintln!("\nerror: {e:#}");
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
    }
}
