//! `parlance generate`: continue a prompt, streaming the text to stdout.

use std::io::Write;
use std::path::Path;

use engine::{EngineHandle, Event, GenerateRequest, SamplingParams};

/// Sampling flags shared by `generate` and `chat`.
#[derive(clap::Args, Clone)]
pub struct SamplingArgs {
    /// 0 picks the most likely token every time (greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// 0 turns top-k off.
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Seed for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// A string that ends generation (repeatable); it is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Worker threads (0: one per physical core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            ..SamplingParams::default()
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Catalog name or path to a GGUF file.
    #[arg(long, default_value = catalog::CATALOG[0].name)]
    pub model: String,
    /// The prompt, used as is (no chat template).
    #[arg(long)]
    pub prompt: String,
    /// Keep going past end-of-generation tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let engine = crate::model_arg::start(&args.model, data_dir, args.sampling.threads)?;
    let prompt = engine.encode_prompt(&args.prompt);
    let req = GenerateRequest {
        prompt,
        params: args.sampling.params(),
        max_tokens: Some(args.sampling.max_tokens),
        stop: args.sampling.stop.clone(),
        logprobs: None,
        ignore_eos: args.ignore_eos,
        constraint: None,
    };
    stream(&engine, req, &mut std::io::stdout())?;
    println!();
    Ok(())
}

/// Runs `req` and writes its text to `out` as it arrives; returns the whole text.
pub fn stream(
    engine: &EngineHandle,
    req: GenerateRequest,
    out: &mut dyn Write,
) -> anyhow::Result<String> {
    let mut gen = engine.submit(req)?;
    let mut all = String::new();
    while let Some(ev) = gen.next_blocking() {
        match ev {
            Event::Token { text, .. } => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
                all.push_str(&text);
            }
            Event::Done { text, .. } => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
                all.push_str(&text);
                return Ok(all);
            }
            Event::Failed { message } => anyhow::bail!("generation failed: {message}"),
        }
    }
    anyhow::bail!("the engine stopped before the generation finished")
}
