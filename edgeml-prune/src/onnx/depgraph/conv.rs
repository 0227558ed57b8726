//! `Conv`: a new group of output channels (`group = 1`), the input's groups passed
//! through (depthwise), or a new group repeated in `G` segments with the `G` input
//! slices coupled (grouped).

use super::{Builder, Layout, MemberKind, Seg, f32_init, int_attr, node_name};

impl Builder<'_> {
    pub(super) fn conv(&mut self, i: usize, input: Option<Layout>) {
        let g = self.g;
        let n = &g.nodes[i];
        let name = node_name(n);
        let input = match input {
            Some(l) if !(l.axis1() && l.block >= 1) => {
                self.block(&l, &format!("Conv `{name}` reads another axis as channels"));
                None
            }
            other => other,
        };
        let out = n.outputs.first().cloned().unwrap_or_default();
        let w = n.inputs.get(1).cloned().unwrap_or_default();
        let bias = n.inputs.get(2).filter(|b| !b.is_empty()).cloned();
        let Some(shape) = f32_init(g, &w)
            .map(|a| a.shape().to_vec())
            .filter(|s| s.len() >= 3)
        else {
            if let Some(l) = input {
                self.block(&l, &format!("Conv `{name}` has no f32 initializer weight"));
            }
            return;
        };
        let groups = int_attr(n, "group", 1);
        let rank = Some(shape.len());
        let from_end = shape.len() - 2;
        let depthwise = groups > 1 && groups as usize == shape[0] && shape[1] == 1;
        if groups == 1 {
            let l = self.fresh(&out, shape[0], rank, from_end);
            self.add_members(&l, &w, 0, 1, MemberKind::Output);
            if let Some(b) = &bias {
                self.add_members(&l, b, 0, 1, MemberKind::Param);
            }
            if let Some(inl) = input {
                self.input_channels(&inl, &w, 1, shape[1], &format!("Conv `{name}`"));
            }
        } else if let Some(l) = input
            .clone()
            .filter(|l| depthwise && l.positions() == shape[0])
        {
            self.add_members(&l, &w, 0, l.block, MemberKind::Depthwise);
            if let Some(b) = &bias {
                self.add_members(&l, b, 0, l.block, MemberKind::Param);
            }
            self.depthwise.push(i);
            self.set(&out, l);
        } else if depthwise {
            let why = format!("depthwise Conv `{name}` on untracked input channels");
            let l = self.fresh(&out, shape[0], rank, from_end);
            self.block(&l, &why);
            if let Some(inl) = input {
                let why = format!("depthwise Conv `{name}` of {} channels", shape[0]);
                self.block(&inl, &why);
            }
        } else {
            self.grouped_conv(i, &shape, input);
        }
    }

    /// A grouped `Conv` (`1 < G`, not depthwise): output channel `k·(C_out/G) + j` reads
    /// only input slice `k`, through weight rows `k·(C_out/G) ..` and columns `0 ..
    /// C_in/G`. Its output is one new group of `C_out/G` channels repeated in `G`
    /// segments (channel `j` of every slice is removed together), and its `G` input
    /// slices are coupled index by index (column `j` of the weight is one input channel
    /// of every slice). So every slice keeps the same channels, `group` stays `G`, and
    /// the pruned conv computes exactly the original one on the kept channels.
    fn grouped_conv(&mut self, i: usize, shape: &[usize], input: Option<Layout>) {
        let n = &self.g.nodes[i];
        let name = node_name(n);
        let groups = int_attr(n, "group", 1);
        let out = n.outputs.first().cloned().unwrap_or_default();
        let out = out.as_str();
        let w = n.inputs.get(1).cloned().unwrap_or_default();
        let w = w.as_str();
        let bias = n.inputs.get(2).filter(|b| !b.is_empty()).cloned();
        let g = usize::try_from(groups).unwrap_or(0);
        let why = format!("grouped Conv `{name}` (group = {groups})");
        if g == 0 || !shape[0].is_multiple_of(g) {
            let l = self.fresh(out, shape[0], Some(shape.len()), shape.len() - 2);
            self.block(&l, &format!("{why}: {} output channels", shape[0]));
            if let Some(inl) = input {
                self.block(&inl, &format!("{why}: {} output channels", shape[0]));
            }
            return;
        }
        let o = self.new_group(shape[0] / g);
        let l = Layout {
            segs: vec![
                Seg {
                    group: o,
                    len: shape[0] / g,
                };
                g
            ],
            rank: Some(shape.len()),
            from_end: shape.len() - 2,
            block: 1,
        };
        self.set(out, l.clone());
        self.add_members(&l, w, 0, 1, MemberKind::Output);
        if let Some(b) = &bias {
            self.add_members(&l, b, 0, 1, MemberKind::Param);
        }
        let Some(inl) = input else { return };
        if inl.positions() != shape[1] * g {
            let msg = format!(
                "{why} reads {} channels from {}",
                shape[1] * g,
                inl.positions()
            );
            return self.block(&inl, &msg);
        }
        let mut ps = self.pieces(&inl, &vec![shape[1]; g]).unwrap_or_default();
        if !ps.is_empty() && self.couple(&mut ps) {
            let block = ps[0].block;
            self.add_members(&ps[0], w, 1, block, MemberKind::Input);
        } else {
            let msg = format!("{why}: its input slices do not split into like channel segments");
            self.block(&inl, &msg);
        }
    }
}
