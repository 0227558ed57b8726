//! Ops that move channels without computing on them: the channel shuffle
//! (`Reshape`–`Transpose`–`Reshape`), a `Reshape` that flattens `[N, C, ...]` to
//! `[N, C·S]`, and `Split` on the channel axis. Each rewrites the constants that count
//! channels after pruning ([`Rewrite`](super::Rewrite)).

use super::{Builder, Layout, Target, int_attr, node_name};
use edgeml_onnx::{Attribute, Dim, Tensor};

impl Builder<'_> {
    /// An `int64` initializer read by this node only (so it can be rewritten). One
    /// that is also listed as a graph input (IR < 4 models list every initializer) is
    /// accepted: its shape does not change, only its value.
    fn private_ints(&self, name: Option<&String>) -> Result<(String, Vec<i64>), String> {
        let name = name.filter(|n| !n.is_empty()).ok_or("has no shape input")?;
        let private = self.ix.uses(name) == 1;
        match self.g.initializer(name) {
            Some(Tensor::I64(a)) if private => Ok((name.clone(), a.iter().copied().collect())),
            Some(Tensor::I64(_)) => Err(format!("`{name}` is shared")),
            _ => Err(format!("`{name}` is not an int64 initializer")),
        }
    }

    /// The only consumer of `value` if it has exactly one and is no graph output.
    fn only_consumer(&self, value: &str) -> Option<usize> {
        match self.ix.consumers(value) {
            [c] if !self.ix.is_output(value) => Some(*c),
            _ => None,
        }
    }

    /// Whether `axis` (an ONNX axis attribute, possibly negative) is `l`'s channel axis.
    pub(super) fn on_channel_axis(l: &Layout, axis: i64) -> bool {
        match (axis, l.rank) {
            (a, _) if a < 0 => {
                a.checked_neg().and_then(|x| usize::try_from(x - 1).ok()) == Some(l.from_end)
            }
            (a, Some(r)) => r as i64 - 1 - l.from_end as i64 == a,
            _ => false,
        }
    }

    /// `Reshape`: the first node of a channel shuffle, or a flatten to `[N, C·H·W]`;
    /// anything else blocks.
    pub(super) fn reshape(&mut self, i: usize, input: Option<Layout>) {
        let Some(l) = input else { return };
        let n = &self.g.nodes[i];
        let rank2 = matches!(self.private_ints(n.inputs.get(1)), Ok((_, s)) if s.len() == 2);
        let done = if rank2 {
            self.flatten_reshape(i, &l)
        } else {
            self.shuffle(i, &l)
        };
        if let Err(why) = done {
            let name = node_name(&self.g.nodes[i]);
            self.block(&l, &format!("Reshape `{name}` is not followed ({why})"));
        }
    }

    /// The static batch size of `value`: from its `value_info`, else the first dim
    /// shared by every graph input that is not an initializer.
    fn batch(&self, value: &str) -> Option<usize> {
        let g = self.g;
        let first = |s: &Option<Vec<Dim>>| match s.as_deref() {
            Some([Dim::Known(d), ..]) => Some(*d),
            _ => None,
        };
        if let Some(vi) = g.value_info.iter().find(|v| v.name == value) {
            return first(&vi.shape);
        }
        let mut dims = g.runtime_inputs().map(|v| first(&v.shape));
        let d = dims.next()??;
        dims.all(|x| x == Some(d)).then_some(d)
    }

    /// `Reshape` of an `[N, C, ...]` tensor to `[N, C·S]`, as `Flatten(axis = 1)`: the
    /// first entry must be `0` (copy) or the static batch size, the second `-1` or a
    /// multiple of `C` (rewritten after pruning, `C·S` → `C'·S`).
    fn flatten_reshape(&mut self, i: usize, l: &Layout) -> Result<(), String> {
        let n = &self.g.nodes[i];
        let (name, s) = self.private_ints(n.inputs.get(1))?;
        if !l.axis1() || l.block != 1 {
            return Err("not NCHW channels".into());
        }
        let c = l.positions();
        let input = n.inputs.first().cloned().unwrap_or_default();
        let batch = (s[0] == 0 && int_attr(n, "allowzero", 0) == 0)
            || usize::try_from(s[0]).is_ok_and(|b| self.batch(&input) == Some(b));
        let per = match s[1] {
            -1 => Some(0),
            f => usize::try_from(f)
                .ok()
                .filter(|&f| f > 0 && f.is_multiple_of(c))
                .map(|f| f / c),
        };
        let (true, Some(block)) = (batch, per) else {
            return Err(format!("shape {s:?} is not [N, {c}·S] with a static N"));
        };
        let out = n.outputs.first().cloned().unwrap_or_default();
        let fl = Layout {
            segs: l.segs.clone(),
            rank: Some(2),
            from_end: 0,
            block: if l.rank == Some(2) { 1 } else { block },
        };
        self.set(&out, fl);
        if s[1] > 0 {
            self.rewrites
                .push((Target::Initializer(name), 1, s[1], l.clone()));
        }
        Ok(())
    }

    /// The channel shuffle of ShuffleNet: `Reshape` `[N, C, H, W]` → `[N, g, C/g, H, W]`,
    /// `Transpose` `(0, 2, 1, 3, 4)`, `Reshape` → `[N, C, H, W]`: channel `a·(C/g) + b`
    /// moves to `b·g + a`. The `g` blocks of `C/g` channels are coupled index by index
    /// (the reshape needs them equal after pruning), so channel `b` of every block is
    /// one channel whose `g` copies sit side by side after the shuffle: the output
    /// layout is block 0's with a block of `g` positions per channel. Both shape
    /// constants are rewritten (`C/g` and `C` shrink).
    fn shuffle(&mut self, i: usize, l: &Layout) -> Result<(), String> {
        let g = self.g;
        let n = &g.nodes[i];
        if !(l.axis1() && l.rank == Some(4) && l.block == 1) {
            return Err("not a channel shuffle of NCHW channels".into());
        }
        let (s1, shape1) = self.private_ints(n.inputs.get(1))?;
        let c = l.positions();
        let blocks = usize::try_from(*shape1.get(1).unwrap_or(&0)).unwrap_or(0);
        if shape1.len() != 5 || blocks == 0 || !c.is_multiple_of(blocks) {
            return Err(format!(
                "shape {shape1:?} does not split {c} channels in blocks"
            ));
        }
        let per = c / blocks;
        if shape1[2] != -1 && usize::try_from(shape1[2]) != Ok(per) {
            return Err(format!(
                "shape {shape1:?} does not split {c} channels in blocks"
            ));
        }
        // The first entry must keep the batch: 0 (copy), -1 (inferred) or the batch.
        let input = n.inputs.first().cloned().unwrap_or_default();
        let batch = self.batch(&input);
        let keeps_batch = |d: i64| {
            (d == 0 && int_attr(n, "allowzero", 0) == 0)
                || d == -1
                || usize::try_from(d).is_ok_and(|d| batch == Some(d))
        };
        if !keeps_batch(shape1[0]) {
            return Err(format!("shape {shape1:?} does not keep the batch"));
        }
        let v1 = n.outputs.first().cloned().unwrap_or_default();
        let t = self
            .only_consumer(&v1)
            .filter(|&t| {
                let tn = &g.nodes[t];
                tn.op_type == "Transpose"
                    && tn.domain.is_empty()
                    && tn.attr("perm") == Some(&Attribute::Ints(vec![0, 2, 1, 3, 4]))
            })
            .ok_or("not followed by a Transpose (0, 2, 1, 3, 4)")?;
        let v2 = g.nodes[t].outputs.first().cloned().unwrap_or_default();
        let r = self
            .only_consumer(&v2)
            .filter(|&r| {
                let rn = &g.nodes[r];
                rn.op_type == "Reshape" && rn.domain.is_empty() && rn.inputs.first() == Some(&v2)
            })
            .ok_or("the Transpose is not followed by a Reshape")?;
        let (s2, shape2) = self.private_ints(g.nodes[r].inputs.get(1))?;
        if shape2.len() != 4
            || !keeps_batch(shape2[0])
            || (shape2[1] != -1 && usize::try_from(shape2[1]) != Ok(c))
        {
            return Err(format!("the second shape {shape2:?} is not [N, {c}, H, W]"));
        }
        let mut ps = self
            .pieces(l, &vec![per; blocks])
            .ok_or("a block boundary falls inside a channel")?;
        if !self.couple(&mut ps) {
            return Err(format!(
                "its {blocks} blocks do not split into like segments"
            ));
        }
        let out = Layout {
            segs: ps[0].segs.clone(),
            rank: Some(4),
            from_end: 2,
            block: blocks,
        };
        self.handled.extend([t, r]);
        self.set(&v1, l.clone());
        self.set(&v2, l.clone());
        let v3 = g.nodes[r].outputs.first().cloned().unwrap_or_default();
        self.set(&v3, out);
        if shape1[2] > 0 {
            self.rewrites
                .push((Target::Initializer(s1), 2, shape1[2], l.clone()));
        }
        if shape2[1] > 0 {
            self.rewrites
                .push((Target::Initializer(s2), 1, shape2[1], l.clone()));
        }
        Ok(())
    }

    /// `Split` on the channel axis: each output is its slice of the layout (groups cut
    /// at the boundaries). Explicit sizes (the `split` attribute before opset 13, the
    /// `split` input since) are rewritten after pruning, so the pieces prune freely;
    /// an equal split without sizes couples its pieces index by index (they must stay
    /// equal).
    pub(super) fn split_op(&mut self, i: usize, input: Option<Layout>) {
        let Some(l) = input else { return };
        let n = &self.g.nodes[i];
        let name = node_name(n);
        let why = |w: &str| format!("Split `{name}` is not followed ({w})");
        if !Self::on_channel_axis(&l, int_attr(n, "axis", 0)) || l.block == 0 {
            return self.block(&l, &why("not on the channel axis"));
        }
        let c = l.positions();
        let (sizes, target) = if let Some(Attribute::Ints(s)) = n.attr("split") {
            (s.clone(), Some(Target::Attribute(i, "split")))
        } else if n.inputs.get(1).is_some_and(|s| !s.is_empty()) {
            match self.private_ints(n.inputs.get(1)) {
                Ok((s, v)) => (v, Some(Target::Initializer(s))),
                Err(e) => return self.block(&l, &why(&e)),
            }
        } else {
            let k = n.outputs.len();
            if k == 0 || !c.is_multiple_of(k) {
                return self.block(&l, &why("unequal implicit split"));
            }
            (vec![(c / k) as i64; k], None)
        };
        let sizes: Option<Vec<usize>> = sizes.iter().map(|&s| usize::try_from(s).ok()).collect();
        let Some(sizes) = sizes.filter(|s| s.len() == n.outputs.len()) else {
            return self.block(&l, &why("sizes do not match the outputs"));
        };
        let Some(mut ps) = self.pieces(&l, &sizes) else {
            return self.block(
                &l,
                &why("a cut falls inside a channel or the sizes disagree"),
            );
        };
        if target.is_none() && !self.couple(&mut ps) {
            return self.block(&l, &why("its equal pieces do not split into like segments"));
        }
        let outs = n.outputs.clone();
        for (k, (o, p)) in outs.iter().zip(ps).enumerate() {
            if let Some(t) = &target
                && sizes[k] > 0
            {
                self.rewrites
                    .push((t.clone(), k, sizes[k] as i64, p.clone()));
            }
            if !o.is_empty() {
                self.set(o, p);
            }
        }
    }
}
