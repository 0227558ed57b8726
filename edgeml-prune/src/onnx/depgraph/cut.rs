//! Cutting layouts: a group is split in two where a cut (a `Split`, the `G` slices of a
//! grouped `Conv`, the `g` blocks of a channel shuffle) falls inside it, and equal
//! pieces are coupled index by index.
//!
//! Splitting group `Y` at channel `o` replaces it by two groups `A = Y[..o]` and
//! `B = Y[o..]` everywhere: in every layout that holds `Y` (lazily, by [`Builder::norm`])
//! and in every member (`A` keeps the member's offset, `B` adds `o`). Each channel keeps
//! its members, so splitting never changes what a removal does; it only lets the two
//! halves be coupled (or left free) separately.

use super::{Builder, Layout, Member, Seg};

impl Builder<'_> {
    /// `l` with every split group replaced by its parts (recursively) and every group
    /// by its union-find root.
    pub(super) fn norm(&mut self, l: &Layout) -> Layout {
        let mut segs = Vec::with_capacity(l.segs.len());
        let mut stack: Vec<usize> = l.segs.iter().rev().map(|s| s.group).collect();
        while let Some(g) = stack.pop() {
            let r = self.find(g);
            match &self.split[r] {
                Some(parts) => stack.extend(parts.iter().rev()),
                None => segs.push(Seg {
                    group: r,
                    len: self.len[r],
                }),
            }
        }
        Layout { segs, ..l.clone() }
    }

    /// Splits the group of `g` into its first `at` channels and the rest.
    fn split_group(&mut self, g: usize, at: usize) {
        let r = self.find(g);
        let len = self.len[r];
        let (a, b) = (self.new_group(at), self.new_group(len - at));
        for m in std::mem::take(&mut self.members[r]) {
            self.members[b].push(Member {
                offset: m.offset + at,
                ..m.clone()
            });
            self.members[a].push(m);
        }
        let why = std::mem::take(&mut self.blocked[r]);
        self.blocked[a].clone_from(&why);
        self.blocked[b] = why;
        let values = std::mem::take(&mut self.values[r]);
        self.values[a].clone_from(&values);
        self.values[b] = values;
        self.split[r] = Some([a, b]);
    }

    /// Splits groups so that position `pos` of the channel axis falls between two
    /// segments of `l` (renormalised); false if it falls inside one channel's block.
    fn cut_at(&mut self, l: &mut Layout, pos: usize) -> bool {
        *l = self.norm(l);
        let mut start = 0;
        let mut cut = None;
        for s in &l.segs {
            let end = start + s.len * l.block;
            if pos > start && pos < end {
                let off = pos - start;
                if !off.is_multiple_of(l.block) {
                    return false;
                }
                cut = Some((s.group, off / l.block));
                break;
            }
            start = end;
        }
        if let Some((g, at)) = cut {
            self.split_group(g, at);
            *l = self.norm(l);
        }
        true
    }

    /// Cuts `l` into consecutive pieces of `sizes` positions (their sum is `l`'s width);
    /// `None` if a cut falls inside a channel's block (after a shuffle).
    pub(super) fn pieces(&mut self, l: &Layout, sizes: &[usize]) -> Option<Vec<Layout>> {
        let mut l = self.norm(l);
        if l.block == 0 || sizes.iter().sum::<usize>() != l.positions() {
            return None;
        }
        let mut pos = 0;
        for &s in sizes {
            pos += s;
            if !self.cut_at(&mut l, pos) {
                return None;
            }
        }
        let mut segs = l.segs.iter();
        let mut out = Vec::with_capacity(sizes.len());
        for &s in sizes {
            let mut piece = Vec::new();
            let mut n = 0;
            while n < s {
                let seg = *segs.next()?;
                n += seg.len * l.block;
                piece.push(seg);
            }
            out.push(Layout {
                segs: piece,
                ..l.clone()
            });
        }
        Some(out)
    }

    /// Cuts every piece at every other piece's segment boundaries until all have the
    /// same segment widths; then couples them segment by segment (channel `c` of the
    /// `i`-th segment of every piece is one channel). False, with nothing coupled, if
    /// the pieces differ in width or block, or a cut falls inside a block.
    pub(super) fn couple(&mut self, pieces: &mut [Layout]) -> bool {
        let Some(p0) = pieces.first() else {
            return true;
        };
        let (width, block) = (p0.positions(), p0.block);
        if block == 0
            || pieces
                .iter()
                .any(|p| p.positions() != width || p.block != block)
        {
            return false;
        }
        loop {
            for p in pieces.iter_mut() {
                *p = self.norm(p);
            }
            let mut cuts: Vec<usize> = pieces
                .iter()
                .flat_map(|p| {
                    p.segs.iter().scan(0, move |pos, s| {
                        *pos += s.len * block;
                        Some(*pos)
                    })
                })
                .collect();
            cuts.sort_unstable();
            cuts.dedup();
            let before: usize = pieces.iter().map(|p| p.segs.len()).sum();
            for p in pieces.iter_mut() {
                for &c in &cuts {
                    if !self.cut_at(p, c) {
                        return false;
                    }
                }
            }
            for p in pieces.iter_mut() {
                *p = self.norm(p);
            }
            if pieces.iter().map(|p| p.segs.len()).sum::<usize>() == before {
                break;
            }
        }
        let first = pieces[0].segs.clone();
        for p in &pieces[1..] {
            for (x, y) in first.iter().zip(&p.segs) {
                self.union(x.group, y.group);
            }
        }
        true
    }
}
