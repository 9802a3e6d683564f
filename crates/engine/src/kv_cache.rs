//! Per-sequence KV cache, owned by the engine and lent to the model for each forward pass.
//!
//! The model layers hold no state: a `SequenceKv` carries one sequence's keys and values for
//! every layer, so one forward pass can serve several sequences each at its own position
//! (what continuous batching needs). Storage is preallocated per layer as
//! `[n_kv_heads, capacity, head_dim]` and written in place; it grows by doubling when a
//! sequence outlives its reservation, so a short request never pays for the full context.

use crate::error::Result;
use candle_core::{DType, Device};

/// Shape of the cache a model needs, per layer.
#[derive(Debug, Clone, Copy)]
pub struct KvLayout {
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl KvLayout {
    /// Bytes one token of context costs across all layers (keys and values, f32).
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.n_kv_heads * self.head_dim * DType::F32.size_in_bytes()
    }
}

/// One layer's keys and values, each `[n_kv_heads, capacity, head_dim]`: the keys of one
/// head are contiguous, which is what the attention kernel walks.
struct LayerKv {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// Keys and values of one sequence for every layer.
pub struct SequenceKv {
    layout: KvLayout,
    layers: Vec<LayerKv>,
    /// Tokens whose keys/values are stored (the next token's position).
    len: usize,
    capacity: usize,
}

impl SequenceKv {
    /// The device is accepted for symmetry with the model; the cache lives in host memory.
    pub fn new(layout: KvLayout, capacity: usize, _device: &Device) -> Result<Self> {
        let capacity = capacity.max(16);
        let layers = (0..layout.n_layers).map(|_| Self::alloc_layer(layout, capacity)).collect();
        Ok(Self { layout, layers, len: 0, capacity })
    }

    fn alloc_layer(layout: KvLayout, capacity: usize) -> LayerKv {
        let n = layout.n_kv_heads * capacity * layout.head_dim;
        LayerKv { k: vec![0.0; n], v: vec![0.0; n] }
    }

    /// Number of positions already cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn layout(&self) -> KvLayout {
        self.layout
    }

    /// Resident bytes of this sequence's cache.
    pub fn bytes(&self) -> usize {
        self.capacity * self.layout.bytes_per_token()
    }

    /// Forget everything (the storage is kept for reuse).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Drop cached positions from `len` on (for prefix reuse or rollback).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Make room for `extra` more positions, doubling the reservation when needed.
    pub fn reserve(&mut self, extra: usize) -> Result<()> {
        let needed = self.len + extra;
        if needed > self.capacity {
            self.grow_to(needed.max(self.capacity * 2));
        }
        Ok(())
    }

    /// Make the reservation exactly `capacity` positions when it is smaller (the batch
    /// scheduler sizes caches to the KV blocks it granted).
    pub fn reserve_exact(&mut self, capacity: usize) {
        if capacity > self.capacity {
            self.grow_to(capacity);
        }
    }

    fn grow_to(&mut self, new_cap: usize) {
        let (hd, old_cap, len) = (self.layout.head_dim, self.capacity, self.len);
        for layer in self.layers.iter_mut() {
            let mut fresh = Self::alloc_layer(self.layout, new_cap);
            for h in 0..self.layout.n_kv_heads {
                let (src, dst) = (h * old_cap * hd, h * new_cap * hd);
                fresh.k[dst..dst + len * hd].copy_from_slice(&layer.k[src..src + len * hd]);
                fresh.v[dst..dst + len * hd].copy_from_slice(&layer.v[src..src + len * hd]);
            }
            *layer = fresh;
        }
        self.capacity = new_cap;
    }

    /// Writes one position's keys and values (`[n_kv_heads * head_dim]` each) into `layer`.
    /// Positions at or past `len` only become visible to `len()` in `advance`, once every
    /// layer is written.
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (hd, cap) = (self.layout.head_dim, self.capacity);
        let entry = &mut self.layers[layer];
        for h in 0..self.layout.n_kv_heads {
            let at = h * cap * hd + pos * hd;
            round_into(&mut entry.k[at..at + hd], &k[h * hd..(h + 1) * hd]);
            round_into(&mut entry.v[at..at + hd], &v[h * hd..(h + 1) * hd]);
        }
    }

    /// Keys of kv-head `head` in `layer`, positions `0..capacity`, `head_dim` values each.
    pub(crate) fn keys(&self, layer: usize, head: usize) -> &[f32] {
        let n = self.capacity * self.layout.head_dim;
        &self.layers[layer].k[head * n..(head + 1) * n]
    }

    pub(crate) fn values(&self, layer: usize, head: usize) -> &[f32] {
        let n = self.capacity * self.layout.head_dim;
        &self.layers[layer].v[head * n..(head + 1) * n]
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}

/// Stores values rounded to f16 precision, as llama.cpp's default f16 cache does. The model
/// is sensitive to this: 8-bit activation quantization turns tiny differences into rounding
/// flips, and with f32 keys greedy output left llama.cpp's on a 0.85-nat gap (see
/// ARCHITECTURE.md, numerics). Storage stays f32 so the attention kernel reads no conversions.
fn round_into(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = half::f16::from_f32(*s).to_f32();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> KvLayout {
        KvLayout { n_layers: 2, n_kv_heads: 2, head_dim: 4 }
    }

    /// Keys (or values) of one position: `[n_kv_heads * head_dim]`.
    fn row(base: f32) -> Vec<f32> {
        (0..8).map(|i| base + i as f32).collect()
    }

    fn fill(kv: &mut SequenceKv, positions: usize) {
        for pos in kv.len()..kv.len() + positions {
            for layer in 0..2 {
                kv.write(layer, pos, &row(pos as f32 * 10.0), &row(pos as f32 * 10.0 + 100.0));
            }
        }
        kv.advance(positions);
    }

    #[test]
    fn heads_are_stored_contiguously_by_position() {
        let mut kv = SequenceKv::new(layout(), 16, &Device::Cpu).unwrap();
        fill(&mut kv, 3);
        // head 1 of position 2: values 4..8 of row(20.0)
        assert_eq!(&kv.keys(0, 1)[2 * 4..3 * 4], &[24.0, 25.0, 26.0, 27.0]);
        assert_eq!(&kv.values(1, 0)[4..8], &[110.0, 111.0, 112.0, 113.0]);
        assert_eq!(kv.len(), 3);
    }

    #[test]
    fn growing_keeps_contents_and_truncate_rolls_back() {
        let mut kv = SequenceKv::new(layout(), 16, &Device::Cpu).unwrap();
        fill(&mut kv, 10);
        kv.reserve(20).unwrap();
        assert!(kv.capacity() >= 30);
        assert_eq!(&kv.keys(1, 1)[9 * 4..10 * 4], &[94.0, 95.0, 96.0, 97.0]);
        kv.reserve_exact(100);
        assert_eq!(kv.capacity(), 100);
        assert_eq!(&kv.values(0, 1)[9 * 4..10 * 4], &[194.0, 195.0, 196.0, 197.0]);
        kv.truncate(4);
        assert_eq!(kv.len(), 4);
        assert_eq!(kv.bytes(), kv.capacity() * layout().bytes_per_token());
    }
}
