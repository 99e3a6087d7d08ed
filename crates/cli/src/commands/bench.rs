//! `parlance bench`: prompt-processing and generation speed of the engine's
//! forward pass, measured like llama-bench's `pp` and `tg` tests (a batch of
//! N prompt tokens in one pass; then N single-token decode steps from an
//! empty context), so the two can be compared on the same file and threads.

use std::path::Path;
use std::time::Instant;

use engine::layers::BatchRow;
use engine::Model;
use kernels::{RowOrder, ThreadPool};

#[derive(clap::Args)]
pub struct Args {
    /// Catalog name or path to a GGUF file.
    #[arg(long, default_value = catalog::CATALOG[0].name)]
    pub model: String,
    /// Prompt tokens processed in one batch.
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens generated one at a time.
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Worker threads (0: one per physical core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Repetitions; the mean is reported.
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
}

pub fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let level = crate::model_arg::kernel_level()?;
    let path = crate::model_arg::resolve(&args.model, data_dir)?;
    let model = Model::load(&path)?;
    let threads = match args.threads {
        0 => kernels::default_threads(),
        n => n,
    };
    let pool = ThreadPool::new(threads);
    let vocab = model.config().n_vocab as u32;
    // A fixed pseudo-random token stream, as llama-bench feeds random tokens.
    let token = |i: usize| ((i as u64 * 2_654_435_761) % u64::from(vocab)) as u32;
    let round = || -> anyhow::Result<(f64, f64)> {
        let mut kv = model.new_kv_cache(args.prompt_tokens.max(args.gen_tokens) + 16);
        kv.reserve(1, args.prompt_tokens)?;
        let rows: Vec<BatchRow> = (0..args.prompt_tokens)
            .map(|p| BatchRow {
                seq: 1,
                pos: p,
                token: token(p),
                want_logits: p + 1 == args.prompt_tokens,
                order: model.config().prompt_row_order(p, args.prompt_tokens),
            })
            .collect();
        let t = Instant::now();
        model.forward(&rows, &mut kv, &pool)?;
        let pp = args.prompt_tokens as f64 / t.elapsed().as_secs_f64();
        kv.free_seq(1);
        kv.reserve(2, args.gen_tokens)?;
        let t = Instant::now();
        for p in 0..args.gen_tokens {
            let row = BatchRow {
                seq: 2,
                pos: p,
                token: token(p + 7),
                want_logits: true,
                order: RowOrder::default(),
            };
            model.forward(&[row], &mut kv, &pool)?;
        }
        Ok((pp, args.gen_tokens as f64 / t.elapsed().as_secs_f64()))
    };
    round()?; // warm-up: page in the weights, grow the buffers
    let runs = (0..args.repetitions.max(1))
        .map(|_| round())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (pp, tg): (Vec<f64>, Vec<f64>) = runs.into_iter().unzip();
    println!("model: {}  threads: {threads}  {level}", path.display());
    println!(
        "pp{:<5} {:>9.1} ± {:.1} tok/s",
        args.prompt_tokens,
        mean(&pp),
        stddev(&pp)
    );
    println!(
        "tg{:<5} {:>9.1} ± {:.1} tok/s",
        args.gen_tokens,
        mean(&tg),
        stddev(&tg)
    );
    Ok(())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn stddev(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
}
