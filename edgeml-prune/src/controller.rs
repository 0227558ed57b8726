//! A training-loop controller: recomputes masks on the schedule's steps and keeps the
//! user's weights (and, if asked, gradients) masked, without owning the model.
//!
//! The weights stay in the user's buffers; each call names them:
//! `&mut [("fc1.weight", &mut w1[..]), ...]`. Every name must be a known layer, and
//! every layer that is pruned must be present.

mod layer;

pub use layer::{LayerConfig, Role};

use crate::error::{Error, Result};
use crate::global::global_prune_into;
use crate::masks;
use crate::pattern::Pattern;
use crate::select::Amount;
use edgeml_core::Schedule;
use layer::LayerPruner;
use std::path::Path;

/// Which weights compete for pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every layer is pruned to the target sparsity with its own pattern.
    #[default]
    Layer,
    /// Unstructured magnitude over all pruned layers together
    /// ([`global_magnitude`](crate::global::global_magnitude)); layers given their own
    /// pattern with [`LayerConfig::pattern`] are still pruned layer by layer.
    Global,
}

/// The controller's settings; `Default` prunes layer-wise by exact-k magnitude
/// (PyTorch's `l1_unstructured`), every weight layer, no minimum size.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControllerConfig {
    /// Layer-wise or global.
    pub scope: Scope,
    /// The pattern of layers without their own (default [`Pattern::Magnitude`]).
    pub pattern: Pattern,
    /// Layers with fewer weights than this stay dense (default 0: none).
    pub min_size: usize,
    /// Names of layers never pruned; each must name a layer.
    pub exclude: Vec<String>,
}

struct State {
    cfg: LayerConfig,
    /// Whether this layer is pruned at all.
    active: bool,
    mask: Vec<bool>,
}

/// Per-layer and overall sparsity of the current masks.
#[derive(Debug, Clone, PartialEq)]
pub struct SparsityReport {
    /// `(name, pruned, total)` for every layer, in the order given to the controller.
    pub layers: Vec<(String, usize, usize)>,
    /// Pruned weights over all layers.
    pub pruned: usize,
    /// All weights of all layers (including layers left dense).
    pub total: usize,
}

impl SparsityReport {
    /// `pruned / total` (0 when there are no weights).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.pruned as f64 / self.total as f64
        }
    }
}

/// Drives pruning in a training loop; see the module documentation.
pub struct Controller<S> {
    schedule: S,
    config: ControllerConfig,
    layers: Vec<State>,
}

impl<S: Schedule> Controller<S> {
    /// A controller over `layers`, all masks keeping everything.
    ///
    /// # Errors
    /// [`Error::DuplicateLayer`] for a repeated name, [`Error::UnknownLayer`] for an
    /// exclusion naming no layer, [`Error::Empty`] for a layer without weights or when
    /// no layer is left to prune, [`Error::ShapeMismatch`] for a shape overflowing
    /// `usize`.
    pub fn new(schedule: S, config: ControllerConfig, layers: Vec<LayerConfig>) -> Result<Self> {
        for (i, l) in layers.iter().enumerate() {
            if layers[..i].iter().any(|o| o.name == l.name) {
                return Err(Error::DuplicateLayer(l.name.clone()));
            }
        }
        if let Some(x) = config
            .exclude
            .iter()
            .find(|x| !layers.iter().any(|l| &l.name == *x))
        {
            return Err(Error::UnknownLayer(x.clone()));
        }
        let mut states = Vec::with_capacity(layers.len());
        for cfg in layers {
            let len = cfg.len()?;
            if len == 0 {
                return Err(Error::Empty(cfg.name.clone()));
            }
            let active =
                cfg.prunable() && len >= config.min_size && !config.exclude.contains(&cfg.name);
            states.push(State {
                cfg,
                active,
                mask: vec![true; len],
            });
        }
        if !states.iter().any(|s| s.active) {
            return Err(Error::Empty("prunable layers".into()));
        }
        Ok(Self {
            schedule,
            config,
            layers: states,
        })
    }

    /// The schedule.
    pub fn schedule(&self) -> &S {
        &self.schedule
    }

    /// One training step: when the schedule says so, recomputes the masks from the
    /// current weights at the schedule's sparsity; then multiplies the weights by the
    /// masks (every step, so that optimizer updates cannot revive pruned weights).
    /// Call it after the optimizer update. Returns whether the masks were recomputed.
    ///
    /// # Errors
    /// As [`Controller::update_masks`] and [`Controller::apply`]; on error no weight
    /// has been changed.
    pub fn step(&mut self, step: u64, weights: &mut [(&str, &mut [f32])]) -> Result<bool> {
        let prune = self.schedule.should_prune(step);
        if prune {
            let sparsity = f64::from(self.schedule.sparsity(step));
            let views: Vec<(&str, &[f32])> = weights.iter().map(|(n, w)| (*n, &**w)).collect();
            self.update_masks(sparsity, &views)?;
        }
        self.apply(weights)?;
        Ok(prune)
    }

    /// Recomputes every pruned layer's mask at `sparsity` from `weights` (one-shot
    /// pruning, or a manual schedule). Does not touch the weights.
    ///
    /// # Errors
    /// [`Error::UnknownLayer`] for a name the controller does not know or a pruned
    /// layer missing, [`Error::DuplicateLayer`], [`Error::ShapeMismatch`] for a wrong
    /// length, [`Error::InvalidSparsity`], and the pattern's errors (e.g.
    /// [`Error::NaN`]); on error the masks are unchanged.
    pub fn update_masks(&mut self, sparsity: f64, weights: &[(&str, &[f32])]) -> Result<()> {
        crate::error::check_sparsity(sparsity, "controller")?;
        let idx = self.resolve(weights.iter().map(|(n, w)| (*n, w.len())))?;
        let mut new: Vec<Option<Vec<bool>>> = vec![None; self.layers.len()];
        let mut pooled: Vec<usize> = Vec::new();
        for (wi, &li) in idx.iter().enumerate() {
            let st = &self.layers[li];
            if !st.active {
                continue;
            }
            let custom = st.cfg.pruner.is_some();
            if self.config.scope == Scope::Global && !custom {
                pooled.push(wi);
                continue;
            }
            let mut keep = vec![true; st.mask.len()];
            match &st.cfg.pruner {
                Some(LayerPruner::Pattern(p)) => {
                    p.mask_into(&st.cfg, weights[wi].1, sparsity, &mut keep)?
                }
                Some(LayerPruner::Custom(p)) => p.keep_mask(
                    &st.cfg.name,
                    weights[wi].1,
                    &st.cfg.shape,
                    sparsity,
                    &mut keep,
                )?,
                None => {
                    self.config
                        .pattern
                        .mask_into(&st.cfg, weights[wi].1, sparsity, &mut keep)?
                }
            }
            new[li] = Some(keep);
        }
        if !pooled.is_empty() {
            let ls: Vec<&[f32]> = pooled.iter().map(|&wi| weights[wi].1).collect();
            let mut ms: Vec<Vec<bool>> = ls.iter().map(|l| vec![true; l.len()]).collect();
            let total: usize = ls.iter().map(|l| l.len()).sum();
            let k = Amount::Fraction(sparsity).to_count(total, "global")?;
            let mut views: Vec<&mut [bool]> = ms.iter_mut().map(|m| m.as_mut_slice()).collect();
            global_prune_into(&ls, k, &mut views)?;
            for (&wi, m) in pooled.iter().zip(ms) {
                new[idx[wi]] = Some(m);
            }
        }
        for (st, m) in self.layers.iter_mut().zip(new) {
            if let Some(m) = m {
                st.mask = m;
            }
        }
        Ok(())
    }

    /// Multiplies the named weights by their masks (sets pruned weights to `0.0`).
    ///
    /// # Errors
    /// As the name checks of [`Controller::update_masks`].
    pub fn apply(&self, weights: &mut [(&str, &mut [f32])]) -> Result<()> {
        let idx = self.resolve(weights.iter().map(|(n, w)| (*n, w.len())))?;
        for ((_, w), &li) in weights.iter_mut().zip(&idx) {
            apply_mask(w, &self.layers[li].mask);
        }
        Ok(())
    }

    /// Zeroes the gradients of pruned weights, so that momentum and weight decay do
    /// not move them either. Same naming rules as [`Controller::apply`].
    ///
    /// # Errors
    /// As [`Controller::apply`].
    pub fn mask_gradients(&self, grads: &mut [(&str, &mut [f32])]) -> Result<()> {
        self.apply(grads)
    }

    /// The current keep-mask of layer `name`.
    pub fn mask(&self, name: &str) -> Option<&[bool]> {
        self.layers
            .iter()
            .find(|s| s.cfg.name == name)
            .map(|s| s.mask.as_slice())
    }

    /// Whether layer `name` is pruned (known, prunable, not excluded, large enough).
    pub fn is_pruned(&self, name: &str) -> bool {
        self.layers.iter().any(|s| s.cfg.name == name && s.active)
    }

    /// Per-layer and overall sparsity of the current masks.
    pub fn report(&self) -> SparsityReport {
        let layers: Vec<(String, usize, usize)> = self
            .layers
            .iter()
            .map(|s| {
                let pruned = s.mask.iter().filter(|&&k| !k).count();
                (s.cfg.name.clone(), pruned, s.mask.len())
            })
            .collect();
        SparsityReport {
            pruned: layers.iter().map(|l| l.1).sum(),
            total: layers.iter().map(|l| l.2).sum(),
            layers,
        }
    }

    /// Saves the masks of the pruned layers to `path` ([`crate::masks`] format),
    /// atomically.
    ///
    /// # Errors
    /// [`Error::Io`] when writing fails.
    pub fn save_masks(&self, path: impl AsRef<Path>) -> Result<()> {
        let v: Vec<(&str, &[bool])> = self
            .layers
            .iter()
            .filter(|s| s.active)
            .map(|s| (s.cfg.name.as_str(), s.mask.as_slice()))
            .collect();
        masks::save_masks(path, &v)
    }

    /// Restores masks saved by [`Controller::save_masks`]. The file must hold exactly
    /// the pruned layers, with their lengths; then the masks are replaced.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::MaskFormat`], [`Error::UnknownLayer`] for a layer in the
    /// file that is not pruned here or a pruned layer missing from it,
    /// [`Error::ShapeMismatch`] for a wrong length; on error the masks are unchanged.
    pub fn load_masks(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let loaded = masks::load_masks(path)?;
        let mut slot = vec![None; self.layers.len()];
        for (name, m) in loaded {
            let li = self
                .layers
                .iter()
                .position(|s| s.active && s.cfg.name == name)
                .ok_or_else(|| Error::UnknownLayer(name.clone()))?;
            if m.len() != self.layers[li].mask.len() {
                return Err(Error::shape(
                    &name,
                    format!(
                        "file mask has {} flags, layer has {}",
                        m.len(),
                        self.layers[li].mask.len()
                    ),
                ));
            }
            slot[li] = Some(m);
        }
        if let Some(s) = self
            .layers
            .iter()
            .zip(&slot)
            .find(|(s, m)| s.active && m.is_none())
        {
            return Err(Error::UnknownLayer(s.0.cfg.name.clone()));
        }
        for (s, m) in self.layers.iter_mut().zip(slot) {
            if let Some(m) = m {
                s.mask = m;
            }
        }
        Ok(())
    }

    /// Maps each named buffer to its layer index, checking names, duplicates, lengths,
    /// and that every pruned layer is present.
    fn resolve<'a>(&self, named: impl Iterator<Item = (&'a str, usize)>) -> Result<Vec<usize>> {
        let mut idx = Vec::new();
        let mut seen = vec![false; self.layers.len()];
        for (name, len) in named {
            let li = self
                .layers
                .iter()
                .position(|s| s.cfg.name == name)
                .ok_or_else(|| Error::UnknownLayer(name.to_owned()))?;
            if std::mem::replace(&mut seen[li], true) {
                return Err(Error::DuplicateLayer(name.to_owned()));
            }
            let want = self.layers[li].mask.len();
            if len != want {
                return Err(Error::shape(
                    name,
                    format!("{len} values given, layer has {want}"),
                ));
            }
            idx.push(li);
        }
        if let Some(s) = self
            .layers
            .iter()
            .zip(&seen)
            .find(|(s, seen)| s.active && !**seen)
        {
            return Err(Error::UnknownLayer(s.0.cfg.name.clone()));
        }
        Ok(idx)
    }
}

fn apply_mask(w: &mut [f32], mask: &[bool]) {
    for (v, &k) in w.iter_mut().zip(mask) {
        if !k {
            *v = 0.0;
        }
    }
}
