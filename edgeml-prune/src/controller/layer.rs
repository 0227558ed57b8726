//! Per-layer configuration of the controller.

use crate::error::{Error, Result};
use crate::pattern::Pattern;
use edgeml_core::{HasErrorKind, Pruner};
use std::fmt::Display;

/// What a parameter is; biases and normalisation parameters are not pruned unless
/// asked with [`LayerConfig::prune`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A weight matrix or kernel (pruned by default).
    Weight,
    /// A bias vector (not pruned by default).
    Bias,
    /// A normalisation scale or shift (not pruned by default).
    Norm,
}

/// A user-supplied pruner behind a uniform error type.
pub(crate) trait DynPruner: Send + Sync {
    fn keep_mask(
        &self,
        layer: &str,
        w: &[f32],
        shape: &[usize],
        s: f64,
        keep: &mut [bool],
    ) -> Result<()>;
}

struct Adapter<P>(P);

impl<P> DynPruner for Adapter<P>
where
    P: Pruner + Send + Sync,
    P::Error: HasErrorKind + Display,
{
    fn keep_mask(
        &self,
        layer: &str,
        w: &[f32],
        shape: &[usize],
        s: f64,
        keep: &mut [bool],
    ) -> Result<()> {
        self.0
            .keep_mask(w, shape, s, keep)
            .map_err(|e| Error::Pruner {
                layer: layer.to_owned(),
                kind: e.kind(),
                message: e.to_string(),
            })
    }
}

pub(crate) enum LayerPruner {
    Pattern(Pattern),
    Custom(Box<dyn DynPruner>),
}

/// One named parameter of the user's model, as the controller sees it.
pub struct LayerConfig {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) role: Role,
    pub(crate) prune: Option<bool>,
    pub(crate) pruner: Option<LayerPruner>,
}

impl std::fmt::Debug for LayerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pruner = match &self.pruner {
            None => "default".to_owned(),
            Some(LayerPruner::Pattern(p)) => format!("{p:?}"),
            Some(LayerPruner::Custom(_)) => "custom".to_owned(),
        };
        f.debug_struct("LayerConfig")
            .field("name", &self.name)
            .field("shape", &self.shape)
            .field("role", &self.role)
            .field("prune", &self.prune)
            .field("pruner", &pruner)
            .finish()
    }
}

impl LayerConfig {
    /// A parameter with the given role; weights are row-major over `shape`.
    pub fn new(name: impl Into<String>, shape: &[usize], role: Role) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            role,
            prune: None,
            pruner: None,
        }
    }

    /// A weight matrix or kernel (pruned).
    pub fn weight(name: impl Into<String>, shape: &[usize]) -> Self {
        Self::new(name, shape, Role::Weight)
    }

    /// A bias (not pruned unless [`LayerConfig::prune`]`(true)`).
    pub fn bias(name: impl Into<String>, shape: &[usize]) -> Self {
        Self::new(name, shape, Role::Bias)
    }

    /// A normalisation parameter (not pruned unless [`LayerConfig::prune`]`(true)`).
    pub fn norm(name: impl Into<String>, shape: &[usize]) -> Self {
        Self::new(name, shape, Role::Norm)
    }

    /// Overrides the role's default: `true` prunes a bias or norm, `false` keeps a
    /// weight dense.
    pub fn prune(mut self, prune: bool) -> Self {
        self.prune = Some(prune);
        self
    }

    /// Prunes this layer with `pattern` instead of the controller's default.
    pub fn pattern(mut self, pattern: Pattern) -> Self {
        self.pruner = Some(LayerPruner::Pattern(pattern));
        self
    }

    /// Prunes this layer with any [`Pruner`]; its errors become [`Error::Pruner`].
    pub fn pruner<P>(mut self, pruner: P) -> Self
    where
        P: Pruner + Send + Sync + 'static,
        P::Error: HasErrorKind + Display,
    {
        self.pruner = Some(LayerPruner::Custom(Box::new(Adapter(pruner))));
        self
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn prunable(&self) -> bool {
        self.prune.unwrap_or(self.role == Role::Weight)
    }

    pub(crate) fn len(&self) -> Result<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::shape(&self.name, format!("shape {:?} overflows", self.shape)))
    }
}

impl Pattern {
    /// Runs the pattern on one layer, naming the layer in errors.
    pub(crate) fn mask_into(
        &self,
        cfg: &LayerConfig,
        w: &[f32],
        s: f64,
        keep: &mut [bool],
    ) -> Result<()> {
        self.keep_mask(w, &cfg.shape, s, keep)
            .map_err(|e| rename(e, &cfg.name))
    }
}

/// Replaces the generic "weights" in an error by the layer's name.
fn rename(e: Error, name: &str) -> Error {
    match e {
        Error::ShapeMismatch { detail, .. } => Error::ShapeMismatch {
            what: name.to_owned(),
            detail,
        },
        Error::PatternMismatch { detail, .. } => Error::PatternMismatch {
            what: name.to_owned(),
            detail,
        },
        Error::NaN { index, .. } => Error::NaN {
            what: name.to_owned(),
            index,
        },
        Error::Empty(_) => Error::Empty(name.to_owned()),
        other => other,
    }
}
