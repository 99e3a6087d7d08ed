//! Parsing the GGUF header, metadata and tensor table out of a byte buffer
//! (a memory map or an owned vector), with bounds checks on every read.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use crate::types::GgmlType;
use crate::value::Value;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Nesting bound for arrays of arrays, so a hostile file cannot recurse deeply.
const MAX_ARRAY_DEPTH: usize = 4;
/// A tensor never has more dimensions than GGML supports.
const MAX_DIMS: u32 = 4;

/// Why a file could not be read as GGUF.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file (bad magic bytes)")]
    BadMagic,
    #[error("unsupported GGUF version {0} (versions 2 and 3 are supported)")]
    UnsupportedVersion(u32),
    #[error("truncated or malformed GGUF: {0}")]
    Malformed(String),
}

impl GgufError {
    fn malformed(msg: impl Into<String>) -> Self {
        GgufError::Malformed(msg.into())
    }
}

/// Where one tensor lives in the file and how it is shaped.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the contiguous row length.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    pub n_bytes: usize,
}

impl TensorInfo {
    /// Total number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// An opened GGUF file: parsed metadata and tensor table over the raw bytes.
pub struct GgufFile {
    backing: Backing,
    version: u32,
    metadata: BTreeMap<String, Value>,
    tensors: Vec<TensorInfo>,
    by_name: BTreeMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; the model files are not expected to be
        // modified while we run (the same assumption every GGUF runtime makes).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(Backing::Mapped(map))
    }

    /// Parses a GGUF image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::parse(Backing::Owned(bytes))
    }

    fn parse(backing: Backing) -> Result<Self, GgufError> {
        let bytes = backing.bytes();
        let mut cur = Cursor { bytes, pos: 0 };
        if cur.take(4)? != MAGIC {
            return Err(GgufError::BadMagic);
        }
        let version = cur.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = cur.u64()?;
        let n_kv = cur.u64()?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = cur.string()?;
            let ty = cur.u32()?;
            let value = cur.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let alignment = match metadata.get("general.alignment") {
            Some(v) => v
                .as_u64()
                .filter(|a| *a > 0 && a.is_power_of_two())
                .ok_or_else(|| GgufError::malformed("general.alignment is not a power of two"))?,
            None => DEFAULT_ALIGNMENT,
        };
        // Each tensor descriptor takes at least 8+4+8+4+8 bytes: bound the count
        // by what the file could hold before allocating.
        if n_tensors > (bytes.len() as u64) / 32 {
            return Err(GgufError::malformed(format!(
                "tensor count {n_tensors} exceeds what the file can hold"
            )));
        }
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            raw.push(cur.tensor_header()?);
        }
        let data_start = align_up(cur.pos as u64, alignment)
            .ok_or_else(|| GgufError::malformed("data offset overflows"))?;
        let mut tensors = Vec::with_capacity(raw.len());
        let mut by_name = BTreeMap::new();
        for (name, dims, ty, rel) in raw {
            let info = check_tensor(name, dims, ty, rel, data_start, bytes.len() as u64)?;
            if by_name.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(GgufError::malformed(format!(
                    "duplicate tensor name {}",
                    info.name
                )));
            }
            tensors.push(info);
        }
        Ok(GgufFile {
            backing,
            version,
            metadata,
            tensors,
            by_name,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn metadata(&self) -> &BTreeMap<String, Value> {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// Any integer metadata value that fits `u32`.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key)?.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f32()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    /// An array of strings; `None` if absent or any element is not a string.
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get(key)?
            .as_array()?
            .iter()
            .map(Value::as_str)
            .collect()
    }

    pub fn get_f32_array(&self, key: &str) -> Option<Vec<f32>> {
        self.get(key)?
            .as_array()?
            .iter()
            .map(Value::as_f32)
            .collect()
    }

    pub fn get_i32_array(&self, key: &str) -> Option<Vec<i32>> {
        self.get(key)?
            .as_array()?
            .iter()
            .map(|v| v.as_i64().and_then(|x| i32::try_from(x).ok()))
            .collect()
    }

    /// `general.architecture`, e.g. `llama` or `gemma3`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor (bounds were validated when the file was opened).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = t.offset as usize;
        &self.backing.bytes()[start..start + t.n_bytes]
    }
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? / a * a)
}

fn check_tensor(
    name: String,
    dims: Vec<u64>,
    ty: u32,
    rel: u64,
    data_start: u64,
    file_len: u64,
) -> Result<TensorInfo, GgufError> {
    let bad = |what: String| GgufError::malformed(format!("tensor {name}: {what}"));
    let ty = GgmlType::from_u32(ty).ok_or_else(|| match GgmlType::unknown_name(ty) {
        Some(known) => bad(format!("type {known} (id {ty}) is not supported")),
        None => bad(format!("unknown type id {ty}")),
    })?;
    let mut n: u64 = 1;
    for &d in &dims {
        n = n
            .checked_mul(d)
            .ok_or_else(|| bad("element count overflows".into()))?;
    }
    let row = dims.first().copied().unwrap_or(1);
    if !row.is_multiple_of(ty.block_size() as u64) {
        return Err(bad(format!(
            "row length {row} is not a multiple of the {ty} block size"
        )));
    }
    let n_bytes = (n / ty.block_size() as u64)
        .checked_mul(ty.type_size() as u64)
        .ok_or_else(|| bad("size overflows".into()))?;
    let offset = data_start
        .checked_add(rel)
        .ok_or_else(|| bad("offset overflows".into()))?;
    let end = offset
        .checked_add(n_bytes)
        .ok_or_else(|| bad("offset overflows".into()))?;
    if end > file_len {
        return Err(bad(format!(
            "data [{offset}, {end}) lies past the end of the file ({file_len} bytes): truncated download?"
        )));
    }
    let n_bytes = usize::try_from(n_bytes).map_err(|_| bad("too large".into()))?;
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        n_bytes,
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::malformed(format!(
                "unexpected end of file at byte {} (wanted {n} more bytes)",
                self.pos
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn len(&mut self, elem_min: usize) -> Result<usize, GgufError> {
        let n = self.u64()?;
        // Every element takes at least `elem_min` bytes: refuse counts the rest
        // of the file cannot hold before allocating anything for them.
        if n > (self.remaining() / elem_min.max(1)) as u64 {
            return Err(GgufError::malformed(format!(
                "length {n} at byte {} exceeds the file",
                self.pos
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.len(1)?;
        let raw = self.take(n)?;
        // llama.cpp accepts any bytes here; keep invalid UTF-8 readable rather than refuse.
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::malformed("arrays nested too deeply"));
                }
                let elem_ty = self.u32()?;
                let n = self.len(elem_min_size(elem_ty))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(GgufError::malformed(format!(
                    "unknown metadata value type {other} at byte {}",
                    self.pos
                )))
            }
        })
    }

    fn tensor_header(&mut self) -> Result<(String, Vec<u64>, u32, u64), GgufError> {
        let name = self.string()?;
        let n_dims = self.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufError::malformed(format!(
                "tensor {name} has {n_dims} dimensions"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64()?);
        }
        let ty = self.u32()?;
        let offset = self.u64()?;
        Ok((name, dims, ty, offset))
    }
}

fn elem_min_size(ty: u32) -> usize {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => 1,
    }
}
