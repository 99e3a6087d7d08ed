//! `GET /v1/models`, `GET /v1/models/{model}` and `DELETE
//! /v1/models/{model}`: [`Model`], [`ModelList`] and [`ModelDeleted`].

use serde::{Deserialize, Serialize};

/// One model (`object: "model"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// The id clients pass as `model`; may contain `/`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix time in seconds when the model was added.
    pub created: u64,
    /// Who publishes the model.
    pub owned_by: String,
}

impl Model {
    /// The `object` value.
    pub const OBJECT: &'static str = "model";

    /// A model entry with the right `object`.
    pub fn new(id: impl Into<String>, created: u64, owned_by: impl Into<String>) -> Self {
        Model {
            id: id.into(),
            object: Self::OBJECT.to_owned(),
            created,
            owned_by: owned_by.into(),
        }
    }
}

/// `DELETE /v1/models/{model}`'s answer (`object: "model"`, `deleted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDeleted {
    /// The id deleted.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Always `true`.
    pub deleted: bool,
}

impl ModelDeleted {
    /// The answer for `id`.
    pub fn new(id: impl Into<String>) -> Self {
        ModelDeleted {
            id: id.into(),
            object: Model::OBJECT.to_owned(),
            deleted: true,
        }
    }
}

/// The list of models (`object: "list"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models served.
    pub data: Vec<Model>,
}

impl ModelList {
    /// The `object` value.
    pub const OBJECT: &'static str = "list";

    /// A list with the right `object`.
    pub fn new(data: Vec<Model>) -> Self {
        ModelList {
            object: Self::OBJECT.to_owned(),
            data,
        }
    }
}
