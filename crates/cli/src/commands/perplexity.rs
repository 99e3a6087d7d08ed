//! `parlance perplexity`: a model's perplexity over a text file, computed as
//! llama.cpp's `llama-perplexity` does (see `engine::perplexity`), and its
//! KL divergence against saved log-probabilities (llama-perplexity's
//! `--kl-divergence-base` files, or ours from `--save-logits`).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use engine::perplexity::{self, Chunks, KlStats, LogitsReader, LogitsWriter, PplStats};
use engine::{Model, Tokenizer};
use kernels::ThreadPool;

#[derive(clap::Args)]
pub struct Args {
    /// Catalog name or path to a GGUF file.
    #[arg(long, default_value = catalog::CATALOG[0].name)]
    pub model: String,
    /// The text to score (UTF-8; one trailing newline is dropped, as
    /// llama-perplexity does). Not needed with --kl-divergence-base, whose
    /// file holds the tokens.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Tokens per chunk; each chunk's second half is scored (default 512;
    /// with --kl-divergence-base, the file's).
    #[arg(long, short = 'c')]
    pub ctx: Option<usize>,
    /// Score at most this many chunks (default: all).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Worker threads (0: one per physical core).
    #[arg(long, short = 't', default_value_t = 0)]
    pub threads: usize,
    /// Compare with the log-probabilities in FILE (written by
    /// `llama-perplexity --kl-divergence-base FILE` or by --save-logits):
    /// prints KL divergence, top-1 agreement and Δp.
    #[arg(long, value_name = "FILE")]
    pub kl_divergence_base: Option<PathBuf>,
    /// Save the log-probabilities to FILE in llama-perplexity's
    /// --kl-divergence-base format, for a later comparison.
    #[arg(long, value_name = "FILE")]
    pub save_logits: Option<PathBuf>,
}

pub fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    if args.kl_divergence_base.is_some() && args.save_logits.is_some() {
        bail!("--kl-divergence-base and --save-logits cannot be used together");
    }
    let path = crate::model_arg::resolve(&args.model, data_dir)?;
    let model = Model::load_for_context(&path, load_context(&args)?)
        .with_context(|| format!("loading {}", path.display()))?;
    let tok = Tokenizer::from_gguf(model.file()).context("building the tokenizer")?;
    let threads = match args.threads {
        0 => kernels::default_threads(),
        n => n,
    };
    let pool = ThreadPool::new(threads);
    let bos = if tok.add_bos() { tok.bos_id() } else { None };
    eprintln!(
        "perplexity: {} ({}), {threads} threads",
        path.display(),
        model.config().arch
    );
    match &args.kl_divergence_base {
        Some(base) => kl_divergence(&args, &model, bos, base, &pool),
        None => ppl(&args, &model, &tok, bos, &pool),
    }
}

/// Tokens per chunk when neither `--ctx` nor a base file says.
const DEFAULT_CTX: usize = 512;

/// The context the model is loaded for, as llama-perplexity's is (LongRoPE
/// picks its factors by it): `--ctx`, else the base file's (the `u32` after
/// its 8-byte magic), else [`DEFAULT_CTX`].
fn load_context(args: &Args) -> anyhow::Result<usize> {
    if let Some(ctx) = args.ctx {
        return Ok(ctx);
    }
    let Some(base) = &args.kl_divergence_base else {
        return Ok(DEFAULT_CTX);
    };
    let mut head = [0u8; 12];
    File::open(base)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("reading the header of {}", base.display()))?;
    let [a, b, c, d] = [head[8], head[9], head[10], head[11]];
    Ok(u32::from_le_bytes([a, b, c, d]) as usize)
}

/// Reads the text as llama-perplexity's `-f` does.
fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))?;
    if text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}

fn ppl(
    args: &Args,
    model: &Model,
    tok: &Tokenizer,
    bos: Option<u32>,
    pool: &ThreadPool,
) -> anyhow::Result<()> {
    let Some(file) = &args.file else {
        bail!("--file is required (the text to score), unless --kl-divergence-base is given");
    };
    let text = read_text(file)?;
    let tokens = tok.encode(&text, true, false);
    let chunks = Chunks::new(tokens, args.ctx.unwrap_or(DEFAULT_CTX), bos, args.chunks)?;
    let n_vocab = model.config().n_vocab;
    let mut writer = match &args.save_logits {
        Some(p) => {
            let f = File::create(p).with_context(|| format!("creating {}", p.display()))?;
            Some(LogitsWriter::new(BufWriter::new(f), &chunks, n_vocab)?)
        }
        None => None,
    };
    eprintln!(
        "perplexity: calculating perplexity over {} chunks, n_ctx={}",
        chunks.n_chunk(),
        chunks.n_ctx
    );
    let mut stats = PplStats::default();
    let started = Instant::now();
    for i in 0..chunks.n_chunk() {
        let logits = perplexity::chunk_logits(model, &chunks, i, pool)?;
        let targets = chunks.targets(i);
        match writer.as_mut() {
            Some(w) => w
                .chunk(&logits, targets)?
                .into_iter()
                .for_each(|v| stats.add(v)),
            None => logits
                .chunks_exact(n_vocab)
                .zip(targets)
                .for_each(|(row, &t)| stats.add(perplexity::nll(row, t))),
        }
        if i == 0 {
            let per = started.elapsed().as_secs_f64();
            eprintln!(
                "perplexity: {per:.2} seconds per pass - ETA {:.2} minutes",
                per * chunks.n_chunk() as f64 / 60.0
            );
        }
        eprint!("[{}]{:.4},", i + 1, stats.ppl());
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    if let Some(w) = writer {
        w.finish()?;
    }
    let (p, unc) = stats.estimate();
    println!("Final estimate: PPL = {p:.4} +/- {unc:.5}");
    Ok(())
}

fn kl_divergence(
    args: &Args,
    model: &Model,
    bos: Option<u32>,
    base: &Path,
    pool: &ThreadPool,
) -> anyhow::Result<()> {
    let f = File::open(base).with_context(|| format!("opening {}", base.display()))?;
    let mut reader = LogitsReader::new(BufReader::new(f), bos)?;
    let n_vocab = model.config().n_vocab;
    if reader.n_vocab != n_vocab {
        bail!(
            "the base file was made with a vocabulary of {} tokens, this model has {n_vocab}",
            reader.n_vocab
        );
    }
    if let Some(ctx) = args.ctx.filter(|&c| c != reader.chunks.n_ctx) {
        bail!(
            "the base file was computed with a context of {}, not {ctx} (leave --ctx out to use the file's)",
            reader.chunks.n_ctx
        );
    }
    let chunks = reader.chunks.clone();
    let n_chunk = args
        .chunks
        .map_or(chunks.n_chunk(), |m| m.clamp(1, chunks.n_chunk()));
    eprintln!(
        "kl_divergence: computing over {n_chunk} chunks, n_ctx={}",
        chunks.n_ctx
    );
    let mut kl = KlStats::default();
    let rec_len = perplexity::record_len(n_vocab);
    let started = Instant::now();
    for i in 0..n_chunk {
        let base_recs = reader.next_chunk()?;
        let logits = perplexity::chunk_logits(model, &chunks, i, pool)?;
        for ((row, rec), &t) in logits
            .chunks_exact(n_vocab)
            .zip(base_recs.chunks_exact(rec_len))
            .zip(chunks.targets(i))
        {
            kl.add(row, rec, t);
        }
        if i == 0 {
            let per = started.elapsed().as_secs_f64();
            eprintln!(
                "kl_divergence: {per:.2} seconds per pass - ETA {:.2} minutes\n",
                per * n_chunk as f64 / 60.0
            );
            eprintln!("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p");
        }
        let (p, pu) = kl.ppl.estimate();
        let (lr, lru) = kl.log_ppl_ratio();
        let (k, ku) = kl.kld();
        let (rms, rmsu) = kl.p_diff_rms();
        let top = kl.same_top();
        let topu = (top * (1.0 - top) / (kl.count().max(2) - 1) as f64).sqrt();
        eprintln!(
            "{:4}    {p:9.4} ± {pu:9.4}    {lr:10.5} ± {lru:10.5}    {k:10.5} ± {ku:10.5}    {:6.3} ± {:6.3} %    {:6.3} ± {:6.3} %",
            i + 1,
            100.0 * rms,
            100.0 * rmsu,
            100.0 * top,
            100.0 * topu
        );
    }
    print_kl_summary(&mut kl);
    Ok(())
}

fn print_kl_summary(kl: &mut KlStats) {
    let (p, pu) = kl.ppl.estimate();
    let (b, bu) = kl.base.estimate();
    let (lr, lru) = kl.log_ppl_ratio();
    let (k, ku) = kl.kld();
    kl.klds.sort_by(f32::total_cmp);
    kl.p_diffs.sort_by(f32::total_cmp);
    let n = kl.count();
    let (pd, pdu) = perplexity::mean_and_uncertainty(kl.sum_p_diff, kl.sum_p_diff2, n);
    let (rms, rmsu) = kl.p_diff_rms();
    let top = kl.same_top();
    let topu = (top * (1.0 - top) / (n.max(2) - 1) as f64).sqrt();
    let pc = |v: &[f32], f: f32| perplexity::percentile(v, f);
    println!("====== Perplexity statistics ======");
    println!("Mean PPL(Q)                   : {p:10.6} ± {pu:10.6}");
    println!("Mean PPL(base)                : {b:10.6} ± {bu:10.6}");
    println!("Mean ln(PPL(Q)/PPL(base))     : {lr:10.6} ± {lru:10.6}");
    println!(
        "Mean PPL(Q)/PPL(base)         : {:10.6} ± {:10.6}",
        lr.exp(),
        lr.exp() * lru
    );
    println!();
    println!("====== KL divergence statistics ======");
    println!("Mean    KLD: {k:10.6} ± {ku:10.6}");
    println!("Maximum KLD: {:10.6}", pc(&kl.klds, 1.0));
    println!("99.0%   KLD: {:10.6}", pc(&kl.klds, 0.99));
    println!("Median  KLD: {:10.6}", pc(&kl.klds, 0.5));
    println!("Minimum KLD: {:10.6}", pc(&kl.klds, 0.0));
    println!();
    println!("====== Token probability statistics ======");
    println!("Mean    Δp: {:6.3} ± {:5.3} %", 100.0 * pd, 100.0 * pdu);
    println!("Maximum Δp: {:6.3}%", 100.0 * pc(&kl.p_diffs, 1.0));
    println!("Median  Δp: {:6.3}%", 100.0 * pc(&kl.p_diffs, 0.5));
    println!("Minimum Δp: {:6.3}%", 100.0 * pc(&kl.p_diffs, 0.0));
    println!("RMS Δp    : {:6.3} ± {:5.3} %", 100.0 * rms, 100.0 * rmsu);
    println!("Same top p: {:6.3} ± {:5.3} %", 100.0 * top, 100.0 * topu);
}
