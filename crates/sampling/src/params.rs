//! The knobs of one request's sampling, their defaults and their ranges.

use crate::SamplingError;

/// How to pick the next token. Field names and ranges follow the OpenAI
/// API where it has the knob, llama.cpp where it does not.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy (argmax, ties to the lowest id).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose
    /// probability reaches `top_p`. `1` turns it off.
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens. `0` turns it off.
    pub top_k: usize,
    /// Keep tokens whose probability is at least `min_p` times the most
    /// likely token's. `0` turns it off.
    pub min_p: f32,
    /// Seed of the random draw; the same seed and logits give the same
    /// tokens. `None` seeds from process randomness.
    pub seed: Option<u64>,
    /// OpenAI presence penalty (-2..=2): subtracted once from the logit of
    /// every token seen in the penalty window.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty (-2..=2): subtracted from a token's logit
    /// once per occurrence in the penalty window.
    pub frequency_penalty: f32,
    /// CTRL-style repetition penalty as llama.cpp applies it: the logit of
    /// a token seen in the window is divided by it when positive and
    /// multiplied by it otherwise. `1` turns it off.
    pub repetition_penalty: f32,
    /// How many of the most recent history tokens the three penalties look
    /// at. `0` disables the penalties (as in llama.cpp); `usize::MAX` means
    /// the whole history.
    pub penalty_last_n: usize,
    /// Added to a token's logit before anything else (OpenAI `logit_bias`,
    /// -100..=100). A bias of `-100` or lower bans the token outright.
    /// Ids outside the vocabulary are ignored.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with everything else at its default.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks every field's range; the error names the first bad field.
    pub fn validate(&self) -> Result<(), SamplingError> {
        check_range("temperature", self.temperature, 0.0, f32::MAX)?;
        check_range("top_p", self.top_p, 0.0, 1.0)?;
        check_range("min_p", self.min_p, 0.0, 1.0)?;
        check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        check_range("repetition_penalty", self.repetition_penalty, 0.0, f32::MAX)?;
        if self.repetition_penalty == 0.0 {
            return Err(invalid(
                "repetition_penalty",
                "must be greater than 0".into(),
            ));
        }
        for &(id, bias) in &self.logit_bias {
            if !bias.is_finite() || !(-100.0..=100.0).contains(&bias) {
                return Err(invalid(
                    "logit_bias",
                    format!("bias {bias} for token {id} is outside -100..=100"),
                ));
            }
        }
        Ok(())
    }

    /// Whether sampling reduces to argmax.
    pub fn is_greedy(&self) -> bool {
        // NaN or negative temperatures are invalid; treat them as greedy
        // rather than dividing by them.
        self.temperature.is_nan() || self.temperature <= 0.0
    }
}

fn check_range(field: &'static str, v: f32, lo: f32, hi: f32) -> Result<(), SamplingError> {
    if !v.is_finite() {
        return Err(invalid(field, format!("{v} is not a finite number")));
    }
    if v < lo || v > hi {
        let reason = if hi == f32::MAX {
            format!("{v} is below the minimum of {lo}")
        } else {
            format!("{v} is outside {lo}..={hi}")
        };
        return Err(invalid(field, reason));
    }
    Ok(())
}

fn invalid(field: &'static str, reason: String) -> SamplingError {
    SamplingError::InvalidParam { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(p: SamplingParams) -> &'static str {
        match p.validate() {
            Err(e) => e.field(),
            Ok(()) => "<valid>",
        }
    }

    #[test]
    fn defaults_are_valid_and_neutral() {
        let p = SamplingParams::default();
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.temperature, 1.0);
        assert_eq!(p.top_p, 1.0);
        assert_eq!(p.top_k, 0);
        assert_eq!(p.min_p, 0.0);
        assert_eq!(p.repetition_penalty, 1.0);
        assert!(!p.is_greedy());
        assert!(SamplingParams::greedy().is_greedy());
    }

    #[test]
    fn each_bad_field_is_named() {
        let d = SamplingParams::default;
        let cases: Vec<(SamplingParams, &str)> = vec![
            (
                SamplingParams {
                    temperature: -0.1,
                    ..d()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    temperature: f32::NAN,
                    ..d()
                },
                "temperature",
            ),
            (SamplingParams { top_p: 1.5, ..d() }, "top_p"),
            (
                SamplingParams {
                    top_p: -0.01,
                    ..d()
                },
                "top_p",
            ),
            (SamplingParams { min_p: 2.0, ..d() }, "min_p"),
            (
                SamplingParams {
                    presence_penalty: 2.5,
                    ..d()
                },
                "presence_penalty",
            ),
            (
                SamplingParams {
                    frequency_penalty: -3.0,
                    ..d()
                },
                "frequency_penalty",
            ),
            (
                SamplingParams {
                    repetition_penalty: 0.0,
                    ..d()
                },
                "repetition_penalty",
            ),
            (
                SamplingParams {
                    repetition_penalty: f32::INFINITY,
                    ..d()
                },
                "repetition_penalty",
            ),
            (
                SamplingParams {
                    logit_bias: vec![(3, 150.0)],
                    ..d()
                },
                "logit_bias",
            ),
            (
                SamplingParams {
                    logit_bias: vec![(3, f32::NAN)],
                    ..d()
                },
                "logit_bias",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(field_of(p.clone()), want, "{p:?}");
        }
    }

    #[test]
    fn range_edges_are_accepted() {
        let p = SamplingParams {
            temperature: 0.0,
            top_p: 0.0,
            min_p: 1.0,
            presence_penalty: -2.0,
            frequency_penalty: 2.0,
            repetition_penalty: 1.3,
            logit_bias: vec![(0, -100.0), (1, 100.0)],
            ..SamplingParams::default()
        };
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn error_message_names_field_and_value() {
        let p = SamplingParams {
            top_p: 1.5,
            ..SamplingParams::default()
        };
        let msg = p
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("top_p") && msg.contains("1.5"), "{msg}");
    }
}
