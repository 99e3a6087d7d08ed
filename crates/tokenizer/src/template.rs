//! Chat templates: a GGUF's `tokenizer.chat_template` rendered with minijinja
//! the way Hugging Face `transformers` renders it (Jinja2 with
//! `trim_blocks` and `lstrip_blocks`, `raise_exception`, Python string
//! methods, `tojson` formatted like Python's `json.dumps`, loop controls).

use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{context, Environment, Error, ErrorKind as JinjaErrorKind, Value};
use serde::Serialize;

use crate::error::TemplateError;

const TEMPLATE_NAME: &str = "chat";
/// Prefix that marks an error raised by the template's own `raise_exception`.
const RAISED: &str = "\u{0}raise_exception:";

/// One chat message as the template sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` are the texts the template
    /// sees under those names.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| TemplateError::TemplateSyntax(describe(&e)))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders the conversation; with `add_generation_prompt` the output ends
    /// with the header that starts the assistant's reply.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.render_thinking(messages, add_generation_prompt, None)
    }

    /// [`ChatTemplate::render`] with the template's `enable_thinking`
    /// variable set (thinking templates such as Qwen3's read it); `None`
    /// leaves it undefined.
    pub fn render_thinking(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        enable_thinking: Option<bool>,
    ) -> Result<String, TemplateError> {
        self.render_with(
            messages,
            None::<&()>,
            add_generation_prompt,
            enable_thinking,
        )
    }

    /// [`ChatTemplate::render_thinking`] of messages in any serializable
    /// shape (Hugging Face's: assistant `tool_calls`, `tool` messages with
    /// their `tool_call_id`), with the template's `tools` variable set to
    /// `tools` (the OpenAI function list) when given and left undefined
    /// otherwise.
    pub fn render_with<M: Serialize + ?Sized, T: Serialize + ?Sized>(
        &self,
        messages: &M,
        tools: Option<&T>,
        add_generation_prompt: bool,
        enable_thinking: Option<bool>,
    ) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::TemplateSyntax(describe(&e)))?;
        let ctx = context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        let ctx = match enable_thinking {
            Some(on) => context! { enable_thinking => on, ..ctx },
            None => ctx,
        };
        let ctx = match tools {
            Some(tools) => context! { tools => Value::from_serialize(tools), ..ctx },
            None => ctx,
        };
        tmpl.render(ctx)
            .map_err(|e| match e.detail().and_then(|d| d.strip_prefix(RAISED)) {
                Some(msg) => TemplateError::TemplateRaised(msg.to_string()),
                None => TemplateError::TemplateRender(describe(&e)),
            })
    }
}

fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let _ = write!(s, ": {inner}");
        src = inner.source();
    }
    s
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(
        JinjaErrorKind::InvalidOperation,
        format!("{RAISED}{msg}"),
    ))
}

/// `strftime_now(format)` as `transformers` defines it: the current UTC
/// time formatted (`%Y %m %d %e %b %B %a %A %H %M %S %y %j %%`; others are
/// kept as written). Mistral's, Granite's and Llama 3.2's templates date
/// their system prompt with it.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    strftime(&format, secs)
}

/// `format` for the UTC time `secs` after the Unix epoch.
fn strftime(format: &str, secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = secs / 86_400;
    let (h, mi, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let before: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = before[(m - 1) as usize] + d + i64::from(leap && m > 2);
    let month = MONTHS[(m - 1) as usize];
    let day = DAYS[(days % 7) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('Y') => write!(out, "{y}"),
            Some('y') => write!(out, "{:02}", y % 100),
            Some('m') => write!(out, "{m:02}"),
            Some('d') => write!(out, "{d:02}"),
            Some('e') => write!(out, "{d:2}"),
            Some('j') => write!(out, "{yday:03}"),
            Some('b') => write!(out, "{}", &month[..3]),
            Some('B') => write!(out, "{month}"),
            Some('a') => write!(out, "{}", &day[..3]),
            Some('A') => write!(out, "{day}"),
            Some('H') => write!(out, "{h:02}"),
            Some('M') => write!(out, "{mi:02}"),
            Some('S') => write!(out, "{s:02}"),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    out
}

/// `tojson` as `transformers` defines it: `json.dumps(value,
/// ensure_ascii=False, indent=indent)`, so `", "`/`": "` separators and no
/// HTML escaping; `ensure_ascii=True` escapes non-ASCII as Python does.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&value, indent, 0, &mut out)?;
    if ascii == Some(true) {
        // Python's ensure_ascii: every non-ASCII character as \uXXXX
        // (UTF-16 units); only strings hold any.
        let mut escaped = String::with_capacity(out.len());
        for c in out.chars() {
            if c.is_ascii() {
                escaped.push(c);
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(escaped, "\\u{unit:04x}");
                }
            }
        }
        out = escaped;
    }
    Ok(Value::from_safe_string(out))
}

fn write_json(
    v: &Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(v, out),
        ValueKind::String => write_string(v.as_str().unwrap_or_default(), out),
        ValueKind::Map => {
            let keys: Vec<Value> = v.try_iter()?.collect();
            let items = keys
                .into_iter()
                .map(|k| v.get_item(&k).map(|val| (Some(k), val)))
                .collect::<Result<Vec<_>, _>>()?;
            write_items(&items, ('{', '}'), indent, depth, out)?;
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<(Option<Value>, Value)> = v.try_iter()?.map(|x| (None, x)).collect();
            write_items(&items, ('[', ']'), indent, depth, out)?;
        }
        _ => write_string(&v.to_string(), out),
    }
    Ok(())
}

fn write_items(
    items: &[(Option<Value>, Value)],
    (open, close): (char, char),
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * level));
        }
    };
    for (i, (key, val)) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(if indent.is_some() { "," } else { ", " });
        }
        newline(out, depth + 1);
        if let Some(k) = key {
            match k.as_str() {
                Some(s) => write_string(s, out),
                None => write_string(&k.to_string(), out),
            }
            out.push_str(": ");
        }
        write_json(val, indent, depth + 1, out)?;
    }
    newline(out, depth);
    out.push(close);
    Ok(())
}

fn write_number(v: &Value, out: &mut String) {
    if v.is_integer() {
        let _ = write!(out, "{v}");
        return;
    }
    match f64::try_from(v.clone()) {
        // Python writes integral floats with a trailing `.0`.
        Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 => {
            let _ = write!(out, "{f:.1}");
        }
        Ok(f) if f.is_nan() => out.push_str("NaN"),
        Ok(f) if f.is_infinite() => out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" }),
        _ => {
            let _ = write!(out, "{v}");
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_one(src: &str) -> Result<String, TemplateError> {
        let t = ChatTemplate::new(src, "<s>", "</s>")?;
        t.render(&[ChatMessage::new("user", "  hi \"there\"\n")], true)
    }

    #[test]
    fn python_string_methods_and_variables() {
        let out = render_one(
            "{{ bos_token }}{% for m in messages %}{{ m.role.upper() }}:{{ m['content'].strip() }}{% endfor %}{% if add_generation_prompt %}>{% endif %}{{ eos_token }}",
        )
        .expect("renders");
        assert_eq!(out, "<s>USER:hi \"there\"></s>");
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let out = render_one("{{ messages | tojson }}").expect("renders");
        assert_eq!(out, r#"[{"role": "user", "content": "  hi \"there\"\n"}]"#);
        let out = render_one("{{ {'a': [1, 2.0, none, true], 'b': '<é>'} | tojson(indent=2) }}")
            .expect("renders");
        assert_eq!(
            out,
            "{\n  \"a\": [\n    1,\n    2.0,\n    null,\n    true\n  ],\n  \"b\": \"<é>\"\n}"
        );
    }

    #[test]
    fn tojson_ensure_ascii_escapes_like_python() {
        let out = render_one("{{ {'a': 'é😀', 'b': ['x']} | tojson(ensure_ascii=True) }}")
            .expect("renders");
        assert_eq!(out, r#"{"a": "\u00e9\ud83d\ude00", "b": ["x"]}"#);
    }

    #[test]
    fn trim_and_lstrip_blocks_like_hf() {
        let src = "{% for m in messages %}\n    {% if true %}\n[{{ m.role }}]\n    {% endif %}\n{% endfor %}\n";
        assert_eq!(render_one(src).expect("renders"), "[user]\n");
    }

    #[test]
    fn strftime_formats_like_python() {
        // 2024-07-26 13:05:09 UTC, a Friday; 2024 is a leap year.
        let t = 1_722_000_000 - 1_722_000_000 % 86_400 + 13 * 3600 + 5 * 60 + 9;
        assert_eq!(
            strftime("%d %b %Y|%B %e, %y|%A %a|%H:%M:%S|%j|%%|%Q", t),
            "26 Jul 2024|July 26, 24|Friday Fri|13:05:09|208|%|%Q"
        );
        assert_eq!(strftime("%Y-%m-%d %A", 0), "1970-01-01 Thursday");
        assert_eq!(strftime("%Y-%m-%d %j", 951_782_400), "2000-02-29 060");
        let out = render_one("{{ strftime_now('%Y') }}").expect("renders");
        assert!(out.starts_with("20") && out.len() == 4, "{out}");
    }

    #[test]
    fn loop_controls_work() {
        let src = "{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}";
        assert_eq!(render_one(src).expect("renders"), "02");
    }

    #[test]
    fn raise_exception_surfaces_its_message() {
        let err = render_one("{{ raise_exception('Roles must alternate') }}").expect_err("raises");
        assert_eq!(
            err,
            TemplateError::TemplateRaised("Roles must alternate".into())
        );
        assert_eq!(err.kind(), crate::ErrorKind::InvalidRequest);
    }

    #[test]
    fn syntax_errors_are_reported_at_compile_time() {
        let err = ChatTemplate::new("{% for %}", "", "").expect_err("bad syntax");
        assert!(matches!(err, TemplateError::TemplateSyntax(_)), "{err:?}");
    }
}
