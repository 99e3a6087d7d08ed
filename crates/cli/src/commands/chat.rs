//! `parlance chat`: a terminal conversation, streamed, with the history kept
//! for the session and rendered through the model's own chat template.
//! With `--tools FILE` (OpenAI function tools, a JSON array) the model may
//! call them, in the same generic scheme as the API (`service::generation::tools`):
//! one call per turn, shown as `→ name({arguments})`; the terminal does not
//! run it.

use std::io::{BufRead, Write};
use std::path::Path;

use engine::{ChatMessage, GenerateRequest};

use service::generation::tools;

use super::generate::{stream, SamplingArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Catalog name or path to a GGUF file.
    #[arg(long, default_value = catalog::CATALOG[0].name)]
    pub model: String,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    /// A JSON file holding an array of OpenAI function tools the model may call.
    #[arg(long)]
    pub tools: Option<std::path::PathBuf>,
    /// With --tools: `auto` (the model chooses), `required` or `none`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "required", "none"])]
    pub tool_choice: String,
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
    let tools = match &args.tools {
        Some(path) => Some(ToolSession::load(path, &args.tool_choice, &engine)?),
        None => None,
    };
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
        if let Some(tools) = &tools {
            match tools.turn(&engine, &history, &args.sampling, &mut out) {
                Ok(reply) => history.push(message("assistant", &reply)),
                Err(e) => {
                    history.pop();
                    eprintln!("\nerror: {e:#}");
                }
            }
            writeln!(out)?;
            continue;
        }
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

/// The tools of a `--tools` session, their grammar and how to show calls.
struct ToolSession {
    tools: Vec<api::Tool>,
    mode: tools::ToolMode,
    constraint: Option<engine::Constraint>,
}

impl ToolSession {
    fn load(path: &Path, choice: &str, engine: &engine::EngineHandle) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let tools: Vec<api::Tool> = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: not an array of function tools: {e}", path.display())
        })?;
        let choice: api::ToolChoice = serde_json::from_value(serde_json::json!(choice))?;
        api::tools::check_tools(Some(&tools), Some(&choice)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mode = tools::tool_mode(Some(&tools), Some(&choice));
        let spec =
            tools::grammar_spec(&tools, &mode, false, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let constraint = match spec {
            Some((spec, _)) => {
                let n_vocab = engine.info().config.n_vocab;
                let compiler = grammar::Compiler::for_tokenizer(engine.tokenizer(), n_vocab)?;
                Some(compiler.compile(&spec)?.constraint())
            }
            None => None,
        };
        Ok(ToolSession {
            tools,
            mode,
            constraint,
        })
    }

    /// One answer: the tool list in the system prompt, the output
    /// constrained, calls shown as `→ name(arguments)`. Returns the raw
    /// output (the history keeps calls in the model's own syntax).
    fn turn(
        &self,
        engine: &engine::EngineHandle,
        history: &[ChatMessage],
        sampling: &SamplingArgs,
        out: &mut dyn Write,
    ) -> anyhow::Result<String> {
        let messages: Vec<api::ChatMessage> = history
            .iter()
            .map(|m| match m.role.as_str() {
                "system" => api::ChatMessage::System {
                    content: m.content.as_str().into(),
                    name: None,
                },
                "assistant" => api::ChatMessage::Assistant {
                    content: Some(m.content.as_str().into()),
                    name: None,
                    refusal: None,
                    tool_calls: None,
                },
                _ => api::ChatMessage::User {
                    content: m.content.as_str().into(),
                    name: None,
                },
            })
            .collect();
        let rendered = tools::render_messages(&messages, &self.tools, &self.mode);
        let text = engine.render_chat(&rendered, true)?;
        let req = GenerateRequest {
            prompt: engine.encode_prompt(&text),
            params: sampling.params(),
            max_tokens: Some(sampling.max_tokens),
            stop: sampling.stop.clone(),
            logprobs: None,
            ignore_eos: false,
            constraint: self.constraint.clone(),
        };
        let mut gen = engine.submit(req)?;
        let mut reader = tools::CallReader::default();
        let mut raw = String::new();
        let mut open = false;
        let mut show = |pieces: Vec<tools::Piece>, out: &mut dyn Write| -> std::io::Result<()> {
            for piece in pieces {
                match piece {
                    tools::Piece::Text(t) => out.write_all(t.as_bytes())?,
                    tools::Piece::CallStart { index, name, .. } => {
                        if open {
                            writeln!(out, ")")?;
                        }
                        if index == 0 {
                            writeln!(out)?;
                        }
                        write!(out, "→ {name}(")?;
                        open = true;
                    }
                    tools::Piece::Arguments { text, .. } => out.write_all(text.as_bytes())?,
                }
            }
            out.flush()
        };
        while let Some(ev) = gen.next_blocking() {
            match ev {
                engine::Event::Token { text, .. } => {
                    raw.push_str(&text);
                    show(reader.push(&text), out)?;
                }
                engine::Event::Done { text, .. } => {
                    raw.push_str(&text);
                    let mut pieces = reader.push(&text);
                    pieces.extend(reader.finish());
                    show(pieces, out)?;
                    if open {
                        write!(out, ")")?;
                    }
                    return Ok(raw);
                }
                engine::Event::Failed { message } => anyhow::bail!("generation failed: {message}"),
            }
        }
        anyhow::bail!("the engine stopped before the generation finished")
    }
}
