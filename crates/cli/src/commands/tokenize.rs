//! `parlance tokenize`: text on stdin to token ids on stdout.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Catalog name or path to a GGUF file.
    #[arg(long, default_value = catalog::CATALOG[0].name)]
    pub model: String,
    /// Match special-token text (like `<|im_start|>`) as those tokens.
    #[arg(long)]
    pub parse_special: bool,
    /// Do not add the model's BOS token.
    #[arg(long)]
    pub no_bos: bool,
}

pub fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let path = crate::model_arg::resolve(&args.model, data_dir)?;
    let file = gguf_open(&path)?;
    let tok = engine::Tokenizer::from_gguf(&file).context("building the tokenizer")?;
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading stdin")?;
    let ids = tok.encode(&text, !args.no_bos, args.parse_special);
    let line: Vec<String> = ids.iter().map(u32::to_string).collect();
    println!("{}", line.join(" "));
    Ok(())
}

fn gguf_open(path: &Path) -> anyhow::Result<gguf::GgufFile> {
    gguf::GgufFile::open(path).with_context(|| format!("opening {}", path.display()))
}
