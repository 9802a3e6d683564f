//! Per-sequence KV cache, owned by the engine and lent to the model for each forward pass.
//!
//! The model layers hold no state: a `SequenceKv` carries one sequence's keys and values for
//! every layer, so one forward pass can serve several sequences each at its own position
//! (what continuous batching needs). Storage is preallocated per layer as
//! `[n_kv_heads, capacity, head_dim]` and written in place; it grows by doubling when a
//! sequence outlives its reservation, so a short request never pays for the full context.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};

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

struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// Keys and values of one sequence for every layer.
pub struct SequenceKv {
    layout: KvLayout,
    layers: Vec<LayerKv>,
    /// Tokens whose keys/values are stored (the next token's position).
    len: usize,
    capacity: usize,
    device: Device,
}

impl SequenceKv {
    pub fn new(layout: KvLayout, capacity: usize, device: &Device) -> Result<Self> {
        let capacity = capacity.max(16);
        let layers =
            (0..layout.n_layers).map(|_| Self::alloc_layer(layout, capacity, device)).collect::<Result<Vec<_>>>()?;
        Ok(Self { layout, layers, len: 0, capacity, device: device.clone() })
    }

    fn alloc_layer(layout: KvLayout, capacity: usize, device: &Device) -> Result<LayerKv> {
        let shape = (layout.n_kv_heads, capacity, layout.head_dim);
        Ok(LayerKv { k: Tensor::zeros(shape, DType::F32, device)?, v: Tensor::zeros(shape, DType::F32, device)? })
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
        if needed <= self.capacity {
            return Ok(());
        }
        let new_cap = needed.max(self.capacity * 2);
        for layer in self.layers.iter_mut() {
            let fresh = Self::alloc_layer(self.layout, new_cap, &self.device)?;
            if self.len > 0 {
                fresh.k.slice_set(&layer.k.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                fresh.v.slice_set(&layer.v.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
            }
            *layer = fresh;
        }
        self.capacity = new_cap;
        Ok(())
    }

    /// Write `k`/`v` (`[n_kv_heads, t, head_dim]`, contiguous) at the current end of layer
    /// `layer` and return views of all cached keys and values including them.
    /// The sequence length advances only in `advance`, once every layer is written.
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(1)?;
        let entry = &self.layers[layer];
        entry.k.slice_set(k, 1, self.len)?;
        entry.v.slice_set(v, 1, self.len)?;
        let total = self.len + t;
        Ok((entry.k.narrow(1, 0, total)?, entry.v.narrow(1, 0, total)?))
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> KvLayout {
        KvLayout { n_layers: 2, n_kv_heads: 2, head_dim: 4 }
    }

    fn block(t: usize, base: f32) -> Tensor {
        let data: Vec<f32> = (0..2 * t * 4).map(|i| base + i as f32).collect();
        Tensor::from_vec(data, (2, t, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn append_returns_everything_cached_so_far() {
        let mut kv = SequenceKv::new(layout(), 16, &Device::Cpu).unwrap();
        for layer in 0..2 {
            kv.append(layer, &block(3, 0.0), &block(3, 100.0)).unwrap();
        }
        kv.advance(3);
        let (k, v) = kv.append(0, &block(1, 50.0), &block(1, 150.0)).unwrap();
        assert_eq!(k.dims(), &[2, 4, 4]);
        let k = k.to_vec3::<f32>().unwrap();
        assert_eq!(k[0][0], vec![0., 1., 2., 3.]);
        assert_eq!(k[0][3], vec![50., 51., 52., 53.]);
        assert_eq!(v.to_vec3::<f32>().unwrap()[1][3], vec![154., 155., 156., 157.]);
    }

    #[test]
    fn growing_keeps_contents_and_truncate_rolls_back() {
        let mut kv = SequenceKv::new(layout(), 16, &Device::Cpu).unwrap();
        for layer in 0..2 {
            kv.append(layer, &block(10, 0.0), &block(10, 0.0)).unwrap();
        }
        kv.advance(10);
        kv.reserve(20).unwrap();
        assert!(kv.capacity() >= 30);
        let (k, _) = kv.append(1, &block(1, 7.0), &block(1, 7.0)).unwrap();
        let k = k.to_vec3::<f32>().unwrap();
        assert_eq!(k[1][9], block(10, 0.0).to_vec3::<f32>().unwrap()[1][9]);
        kv.truncate(4);
        assert_eq!(kv.len(), 4);
        assert_eq!(kv.bytes(), kv.capacity() * layout().bytes_per_token());
    }
}
