//! Constrained decoding: grammars compiled for one model's vocabulary and
//! the per-sequence matchers that give the engine its allowed-token masks.
//!
//! This crate owns the bridge to `llguidance`: the token trie built from
//! the GGUF vocabulary ([`vocab`]), the checks a JSON Schema passes before
//! it is compiled ([`schema`], with the path of any fault), compiling a
//! [`GrammarSpec`] (any JSON object, a JSON Schema, or a Lark grammar —
//! the tool-call grammars are Lark with `%json` schemas inside) under size
//! and effort limits, and the matcher behind `sampling::TokenConstraint`.
//! A [`Compiler`] is built once per model ([`Compiler::for_tokenizer`]
//! caches it); compiling a grammar checks it fully, so a request learns of
//! a bad grammar before any generation starts.

pub mod schema;
pub mod vocab;

use std::sync::{Arc, Mutex, Weak};

use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::{Matcher, ParserFactory, TokenParser};
use sampling::{Constraint, ConstraintFactory, TokenConstraint};
use serde_json::{json, Value};
use tokenizer::Tokenizer;

pub use schema::SchemaFault;

/// Most symbols a compiled grammar may have (llguidance's default is
/// 500 000); a larger one is refused rather than compiled.
pub const MAX_GRAMMAR_SIZE: usize = 200_000;
/// The lexer work allowed while compiling (about 20 ms at llguidance's
/// measured 50k/ms).
pub const COMPILE_FUEL: u64 = 1_000_000;

/// What the output must be.
#[derive(Debug, Clone, PartialEq)]
pub enum GrammarSpec {
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema; `strict` adds OpenAI's strict rules.
    JsonSchema { schema: Value, strict: bool },
    /// A Lark grammar (llguidance's dialect, `%json` included).
    Lark(String),
}

/// Why a grammar was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The schema breaks a rule at `path` (dotted, inside the schema).
    #[error("{}", .0.message)]
    Schema(SchemaFault),
    /// The grammar could not be compiled (unsupported, unsatisfiable, too large).
    #[error("{0}")]
    Compile(String),
}

/// Compiles grammars for one model's vocabulary.
pub struct Compiler {
    factory: ParserFactory,
}

/// Compilers already built, by tokenizer.
static COMPILERS: Mutex<Vec<(Weak<Tokenizer>, Arc<Compiler>)>> = Mutex::new(Vec::new());

impl Compiler {
    /// A compiler for `tokenizer`'s vocabulary, `n_vocab` logits wide.
    pub fn new(tokenizer: Arc<Tokenizer>, n_vocab: usize) -> Result<Self, GrammarError> {
        Self::with_limits(tokenizer, n_vocab, MAX_GRAMMAR_SIZE, COMPILE_FUEL)
    }

    /// A compiler whose grammars may have at most `max_grammar_size`
    /// symbols and spend `fuel` lexer work compiling.
    pub fn with_limits(
        tokenizer: Arc<Tokenizer>,
        n_vocab: usize,
        max_grammar_size: usize,
        fuel: u64,
    ) -> Result<Self, GrammarError> {
        let env = vocab::Vocab::env(tokenizer, n_vocab);
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| GrammarError::Compile(e.to_string()))?;
        factory.quiet();
        let limits: &mut ParserLimits = factory.limits_mut();
        limits.max_grammar_size = max_grammar_size;
        limits.initial_lexer_fuel = fuel;
        Ok(Compiler { factory })
    }

    /// The compiler for `tokenizer`, built on first use and shared while
    /// the tokenizer lives.
    pub fn for_tokenizer(
        tokenizer: &Arc<Tokenizer>,
        n_vocab: usize,
    ) -> Result<Arc<Self>, GrammarError> {
        let mut cache = COMPILERS.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(t, _)| t.strong_count() > 0);
        if let Some((_, c)) = cache
            .iter()
            .find(|(t, _)| std::ptr::eq(t.as_ptr(), Arc::as_ptr(tokenizer)))
        {
            return Ok(c.clone());
        }
        let compiler = Arc::new(Compiler::new(tokenizer.clone(), n_vocab)?);
        cache.push((Arc::downgrade(tokenizer), compiler.clone()));
        Ok(compiler)
    }

    /// Compiles `spec` into a grammar ready to constrain generations.
    pub fn compile(&self, spec: &GrammarSpec) -> Result<Grammar, GrammarError> {
        let top = match spec {
            GrammarSpec::JsonObject => {
                TopLevelGrammar::from_json_schema(with_layout(json!({"type": "object"})))
            }
            GrammarSpec::JsonSchema { schema, strict } => {
                schema::check(schema, *strict).map_err(GrammarError::Schema)?;
                TopLevelGrammar::from_json_schema(with_layout(schema.clone()))
            }
            GrammarSpec::Lark(source) => TopLevelGrammar::from_lark(source.clone()),
        };
        let parser = self
            .factory
            .create_parser(top)
            .map_err(|e| GrammarError::Compile(e.to_string()))?;
        // A grammar that fails at its first mask is refused now, not mid-answer.
        let mut probe = Matcher::new(Ok(parser.deep_clone()));
        probe
            .compute_mask()
            .map_err(|e| GrammarError::Compile(e.to_string()))?;
        Ok(Grammar {
            parser: Arc::new(Mutex::new(parser)),
            shown: Arc::new(Vec::new()),
        })
    }
}

/// The compact JSON layout a small model keeps to (no free whitespace, so
/// it cannot wander in blank lines): `{"a": 1, "b": [2, 3]}`.
fn with_layout(mut schema: Value) -> Value {
    if let Value::Object(object) = &mut schema {
        object.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
        schema
    } else {
        // `true`/`false` schemas.
        json!({"anyOf": [schema], "x-guidance": {"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}})
    }
}

/// A compiled grammar: makes one matcher per generation.
#[derive(Clone)]
pub struct Grammar {
    parser: Arc<Mutex<TokenParser>>,
    /// Control tokens whose text goes into the output (see [`Grammar::showing`]).
    shown: Arc<Vec<u32>>,
}

impl Grammar {
    /// This grammar with control tokens `ids` shown in the output: the
    /// markers a grammar names by id (`<[ID]>`), such as Mistral's
    /// `[TOOL_CALLS]`, whose text the call reader must see.
    pub fn showing(mut self, ids: Vec<u32>) -> Self {
        self.shown = Arc::new(ids);
        self
    }

    /// The engine request's constraint for this grammar.
    pub fn constraint(&self) -> Constraint {
        Constraint(Arc::new(self.clone()))
    }

    /// A matcher at the start of the output.
    pub fn matcher(&self) -> GrammarMatcher {
        let parser = self
            .parser
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .deep_clone();
        GrammarMatcher(Matcher::new(Ok(parser)), self.shown.clone())
    }
}

impl ConstraintFactory for Grammar {
    fn start(&self) -> Box<dyn TokenConstraint> {
        Box::new(self.matcher())
    }
}

/// One generation's matcher.
pub struct GrammarMatcher(Matcher, Arc<Vec<u32>>);

impl GrammarMatcher {
    /// Whether the output so far may end here.
    pub fn is_accepting(&mut self) -> bool {
        self.0.is_accepting().unwrap_or(false)
    }
}

impl TokenConstraint for GrammarMatcher {
    fn compute_mask(&mut self, mask: &mut Vec<u32>) -> Result<(), String> {
        let vob = self.0.compute_mask_or_eos().map_err(|e| e.to_string())?;
        mask.clear();
        mask.extend_from_slice(vob.as_slice());
        Ok(())
    }

    fn commit(&mut self, token: u32) -> Result<(), String> {
        self.0.consume_token(token).map_err(|e| e.to_string())
    }

    fn is_finished(&self) -> bool {
        self.0.is_stopped()
    }

    fn shows(&self, token: u32) -> bool {
        self.1.contains(&token)
    }
}
