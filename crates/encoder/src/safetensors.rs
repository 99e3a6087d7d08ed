//! The safetensors reader: an 8-byte little-endian header length, a JSON
//! table of tensors (`dtype`, `shape`, `data_offsets` relative to the end of
//! the header), then the bytes. The file is memory-mapped; every tensor's
//! range is checked against its dtype and shape and the file's length.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::Path;

use kernels::GgmlType;
use memmap2::Mmap;

use crate::EncoderError;

/// One tensor's place in the file.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    /// The element type, as the kernels name it (F32 or F16).
    pub ty: GgmlType,
    /// Dimensions, outermost first (PyTorch's order: a linear layer's
    /// weight is `[out, in]`).
    pub shape: Vec<usize>,
    /// Byte range in the mapped file.
    pub range: Range<usize>,
}

/// A memory-mapped safetensors file.
pub struct SafeTensors {
    map: Mmap,
    tensors: HashMap<String, TensorEntry>,
}

impl std::fmt::Debug for SafeTensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeTensors")
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

impl SafeTensors {
    /// Map and index `path`.
    pub fn open(path: &Path) -> Result<Self, EncoderError> {
        let file = File::open(path).map_err(|e| EncoderError::io(path, e))?;
        // SAFETY: the file is opened read-only and never written through the
        // map; a file changed underneath a running server is outside what
        // any model loader can defend against (the GGUF reader does the same).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| EncoderError::io(path, e))?;
        let tensors = Self::index(&map).map_err(|detail| EncoderError::BadModel {
            path: path.to_path_buf(),
            detail,
        })?;
        Ok(Self { map, tensors })
    }

    fn index(bytes: &[u8]) -> Result<HashMap<String, TensorEntry>, String> {
        let len_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or("shorter than the 8-byte header length")?;
        let header_len = usize::try_from(u64::from_le_bytes(len_bytes))
            .map_err(|_| "header length does not fit in memory")?;
        let data_start = 8usize
            .checked_add(header_len)
            .filter(|&end| end <= bytes.len())
            .ok_or("header runs past the end of the file")?;
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&bytes[8..data_start])
            .map_err(|e| format!("header is not a JSON object: {e}"))?;
        let mut tensors = HashMap::new();
        for (name, value) in raw {
            if name == "__metadata__" {
                continue;
            }
            let entry: RawEntry =
                serde_json::from_value(value).map_err(|e| format!("tensor {name}: {e}"))?;
            let (ty, size) = match entry.dtype.as_str() {
                "F32" => (GgmlType::F32, 4),
                "F16" => (GgmlType::F16, 2),
                // Integer tensors (BERT's position_ids buffer) are not weights.
                "I64" | "I32" => continue,
                other => return Err(format!("tensor {name}: dtype {other} is not supported")),
            };
            let elements = entry
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| format!("tensor {name}: shape overflows"))?;
            let [start, end] = entry.data_offsets;
            let range = (data_start + start)..(data_start + end);
            if start > end || range.end > bytes.len() || end - start != elements * size {
                return Err(format!(
                    "tensor {name}: offsets {start}..{end} do not hold {elements} {} values inside the file",
                    entry.dtype
                ));
            }
            tensors.insert(
                name,
                TensorEntry {
                    ty,
                    shape: entry.shape,
                    range,
                },
            );
        }
        Ok(tensors)
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// The bytes at `range` (a range from one of this file's entries).
    pub fn bytes_at(&self, range: Range<usize>) -> &[u8] {
        &self.map[range]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_f32_and_skips_integer_buffers() {
        let bytes = file(
            r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]},"ids":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}"#,
            &[0u8; 16],
        );
        let t = SafeTensors::index(&bytes).expect("valid");
        assert_eq!(t["w"].shape, vec![2, 1]);
        assert_eq!(t["w"].ty, GgmlType::F32);
        assert!(!t.contains_key("ids"));
    }

    #[test]
    fn refuses_ranges_outside_the_file_or_the_wrong_size() {
        let past_end = file(
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            &[0u8; 8],
        );
        assert!(SafeTensors::index(&past_end).is_err());
        let wrong_size = file(
            r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            &[0u8; 8],
        );
        assert!(SafeTensors::index(&wrong_size).is_err());
        assert!(SafeTensors::index(&[1, 0]).is_err());
        let huge_header = 1u64 << 40;
        assert!(SafeTensors::index(&huge_header.to_le_bytes()).is_err());
        let bf16 = file(
            r#"{"w":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}"#,
            &[0u8; 2],
        );
        assert!(SafeTensors::index(&bf16).unwrap_err().contains("BF16"));
    }
}
