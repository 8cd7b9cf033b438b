//! Sentence vectors beside the tantivy index, for search by meaning.
//!
//! A vector is keyed by the text it embeds ([`text_key`]), not by file: a
//! renamed or copied file's segments carry the same keys, so they find their
//! vectors without embedding anything again, and identical words (a slide
//! shown in ten videos) are embedded once. Segment documents hold the key in
//! their `embed_key` field; a vector no document refers to any more is never
//! returned by a search, and [`VectorStore::compact`] drops it from disk.
//!
//! On disk it is one append-only file: a header naming the model, then
//! records of `key: u64, scale: f32, dims × i8` (unit vectors quantised to
//! 8 bits: about 0.1 % error in a cosine, a quarter of the size of `f32`). A
//! torn last record, from a crash mid-append, is cut off at open.
//!
//! Search is two-stage. Each vector also has a sign-bit code (1 bit per
//! dimension) kept in memory; the Hamming distance between codes ranks all
//! vectors in a few milliseconds per million, and the best candidates are
//! then scored exactly from the `i8` records, which stay in the page cache
//! through a memory map rather than on the heap.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

const MAGIC: &[u8; 8] = b"VXVEC01\n";

/// The key of the vector for `text`: 64 bits of its BLAKE3 hash.
pub fn text_key(text: &str) -> u64 {
    let hash = blake3::hash(text.as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("32-byte hash"))
}

pub struct VectorStore {
    path: PathBuf,
    file: File,
    model: String,
    dims: usize,
    /// Bytes before the first record.
    header_len: u64,
    keys: Vec<u64>,
    rows: HashMap<u64, u32>,
    /// Sign bits, `words` u64 per vector.
    codes: Vec<u64>,
    words: usize,
    /// The records as of the last append.
    map: Option<Mmap>,
}

impl VectorStore {
    /// Opens the store at `path` for vectors of `model` with `dims`
    /// dimensions. A store made by another model (or none) starts empty.
    pub fn open(path: &Path, model: &str, dims: usize) -> std::io::Result<Self> {
        let header = header(model, dims);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut existing = vec![0u8; header.len()];
        let same_model = file.metadata()?.len() >= header.len() as u64
            && file.read_exact(&mut existing).is_ok()
            && existing == header;
        if !same_model {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&header)?;
            file.sync_data()?;
        }
        let mut store = Self {
            path: path.to_owned(),
            file,
            model: model.to_owned(),
            dims,
            header_len: header.len() as u64,
            keys: vec![],
            rows: HashMap::new(),
            codes: vec![],
            words: dims.div_ceil(64),
            map: None,
        };
        let whole = store.records_on_disk()?;
        // Anything past the last whole record is a torn append.
        store
            .file
            .set_len(store.header_len + whole * store.record_len() as u64)?;
        store.remap()?;
        store.load_codes()?;
        Ok(store)
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.header_len + (self.keys.len() * self.record_len()) as u64
    }

    pub fn contains(&self, key: u64) -> bool {
        self.rows.contains_key(&key)
    }

    fn record_len(&self) -> usize {
        12 + self.dims
    }

    fn records_on_disk(&self) -> std::io::Result<u64> {
        let len = self.file.metadata()?.len();
        Ok(len.saturating_sub(self.header_len) / self.record_len() as u64)
    }

    fn remap(&mut self) -> std::io::Result<()> {
        // SAFETY: only this process writes the file, and only by appending
        // past the mapped length or by replacing it whole (compact); the map
        // is replaced after each such change.
        self.map = if self.records_on_disk()? > 0 {
            Some(unsafe { Mmap::map(&self.file)? })
        } else {
            None
        };
        Ok(())
    }

    fn record(&self, row: usize) -> (u64, f32, &[i8]) {
        let map = self.map.as_ref().expect("a row exists, so the map does");
        let start = self.header_len as usize + row * self.record_len();
        let r = &map[start..start + self.record_len()];
        let key = u64::from_le_bytes(r[..8].try_into().unwrap());
        let scale = f32::from_le_bytes(r[8..12].try_into().unwrap());
        // SAFETY: i8 and u8 have the same size and alignment.
        let values =
            unsafe { std::slice::from_raw_parts(r[12..].as_ptr().cast::<i8>(), self.dims) };
        (key, scale, values)
    }

    /// Reads the keys and sign codes with plain reads rather than through the
    /// map, so the records are not counted in vxd's resident memory.
    fn load_codes(&mut self) -> std::io::Result<()> {
        let n = self.records_on_disk()? as usize;
        self.keys.clear();
        self.rows.clear();
        self.codes.clear();
        let mut file = std::io::BufReader::with_capacity(1 << 20, &self.file);
        file.seek(SeekFrom::Start(self.header_len))?;
        let mut record = vec![0u8; self.record_len()];
        for row in 0..n {
            file.read_exact(&mut record)?;
            let key = u64::from_le_bytes(record[..8].try_into().unwrap());
            let code = sign_code(record[12..].iter().map(|&v| (v as i8) > 0), self.words);
            self.rows.insert(key, row as u32);
            self.keys.push(key);
            self.codes.extend(code);
        }
        Ok(())
    }

    /// Appends the vectors whose keys are new and makes them durable.
    /// Each vector must have `dims` values; it is normalised here. On an
    /// error (a full disk) the file is cut back and nothing is added.
    pub fn insert(&mut self, items: &[(u64, Vec<f32>)]) -> std::io::Result<usize> {
        let mut seen = HashSet::new();
        let fresh: Vec<&(u64, Vec<f32>)> = items
            .iter()
            .filter(|(k, v)| v.len() == self.dims && !self.contains(*k) && seen.insert(*k))
            .collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        let end = self.disk_bytes();
        let mut records = Vec::with_capacity(fresh.len() * self.record_len());
        let mut codes = Vec::with_capacity(fresh.len() * self.words);
        for (key, v) in &fresh {
            let (scale, q) = quantise(v);
            records.extend(key.to_le_bytes());
            records.extend(scale.to_le_bytes());
            records.extend(q.iter().map(|&x| x as u8));
            codes.extend(sign_code(q.iter().map(|&x| x > 0), self.words));
        }
        let written = self
            .file
            .write_all_at(&records, end)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(end);
            return Err(e);
        }
        let before = self.keys.len();
        for (i, (key, _)) in fresh.iter().enumerate() {
            self.rows.insert(*key, (before + i) as u32);
            self.keys.push(*key);
        }
        self.codes.extend(codes);
        if let Err(e) = self.remap() {
            // Keep memory and file in step: drop what was just added.
            for key in self.keys.drain(before..) {
                self.rows.remove(&key);
            }
            self.codes.truncate(before * self.words);
            let _ = self.file.set_len(end);
            return Err(e);
        }
        Ok(fresh.len())
    }

    /// The `k` vectors closest to `query` with a cosine of
    /// at least `floor`, best first, as (key, cosine). `candidates` vectors,
    /// chosen by Hamming distance of their sign codes, are scored exactly.
    pub fn nearest(
        &self,
        query: &[f32],
        k: usize,
        floor: f32,
        candidates: usize,
    ) -> Vec<(u64, f32)> {
        if self.is_empty() || query.len() != self.dims {
            return vec![];
        }
        let query = &unit(query);
        let code = sign_code(query.iter().map(|&v| v > 0.0), self.words);
        // Hamming distances, on every core: the scan is the bulk of the time.
        let mut distances = vec![0u16; self.keys.len()];
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_thread = self.keys.len().div_ceil(threads).max(4096);
        std::thread::scope(|scope| {
            for (out, codes) in distances
                .chunks_mut(per_thread)
                .zip(self.codes.chunks(per_thread * self.words))
            {
                let code = &code;
                scope.spawn(move || hamming(codes, code, out));
            }
        });
        // The distance below which `candidates` vectors lie, by histogram:
        // linear, where sorting a million distances would not be.
        let mut histogram = vec![0usize; self.dims + 2];
        for &d in &distances {
            histogram[d as usize] += 1;
        }
        let (mut last, mut below) = (0, 0);
        while last < histogram.len() && below + histogram[last] < candidates {
            below += histogram[last];
            last += 1;
        }
        // Everything nearer than `last`, and from `last` itself only as many
        // as fill the quota: the distances bunch up, and one bucket can hold
        // ten times the quota.
        let mut room = candidates - below;
        let rows = distances.iter().enumerate().filter_map(|(row, &d)| {
            let d = d as usize;
            let take = d < last || (d == last && room > 0);
            room -= usize::from(d == last && take);
            take.then_some(row)
        });
        self.best(rows, query, k, floor)
    }

    /// Like [`nearest`](Self::nearest), scoring every vector exactly: the
    /// reference that the two-stage search's recall is measured against.
    pub fn nearest_exact(&self, query: &[f32], k: usize, floor: f32) -> Vec<(u64, f32)> {
        if query.len() != self.dims {
            return vec![];
        }
        self.best(0..self.keys.len(), &unit(query), k, floor)
    }

    fn best(
        &self,
        rows: impl Iterator<Item = usize>,
        query: &[f32],
        k: usize,
        floor: f32,
    ) -> Vec<(u64, f32)> {
        let mut scored: Vec<(u64, f32)> = rows
            .map(|row| {
                let (key, scale, values) = self.record(row);
                let dot: f32 = values.iter().zip(query).map(|(&v, &q)| v as f32 * q).sum();
                (key, dot * scale)
            })
            .filter(|&(_, cos)| cos >= floor)
            .collect();
        scored.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        scored
    }

    /// Rewrites the file with only the vectors whose keys are in `live`;
    /// returns how many were dropped. Atomic: a crash leaves the old file.
    pub fn compact(&mut self, live: &HashSet<u64>) -> std::io::Result<usize> {
        let keep: Vec<usize> = (0..self.keys.len())
            .filter(|&row| live.contains(&self.keys[row]))
            .collect();
        let dropped = self.keys.len() - keep.len();
        if dropped == 0 {
            return Ok(0);
        }
        let tmp = self.path.with_extension("compacting");
        {
            let mut out = BufWriter::new(File::create(&tmp)?);
            out.write_all(&header(&self.model, self.dims))?;
            let map = self.map.as_ref().expect("rows exist");
            for row in keep {
                let start = self.header_len as usize + row * self.record_len();
                out.write_all(&map[start..start + self.record_len()])?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.remap()?;
        self.load_codes()?;
        Ok(dropped)
    }
}

/// The Hamming distance of `code` to each code in `codes`, into `out`.
fn hamming(codes: &[u64], code: &[u64], out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has POPCNT, checked just above.
        return unsafe { hamming_popcnt(codes, code, out) };
    }
    hamming_portable(codes, code, out)
}

/// The baseline x86-64 target has no POPCNT instruction, and without it
/// `count_ones` is a dozen instructions: this copy is compiled with it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn hamming_popcnt(codes: &[u64], code: &[u64], out: &mut [u16]) {
    hamming_portable(codes, code, out)
}

#[inline(always)]
fn hamming_portable(codes: &[u64], code: &[u64], out: &mut [u16]) {
    for (d, c) in out.iter_mut().zip(codes.chunks_exact(code.len())) {
        *d = c
            .iter()
            .zip(code)
            .map(|(a, b)| (a ^ b).count_ones() as u16)
            .sum();
    }
}

fn header(model: &str, dims: usize) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend((dims as u32).to_le_bytes());
    h.extend((model.len() as u32).to_le_bytes());
    h.extend(model.as_bytes());
    h
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter().map(|x| x / norm).collect()
}

/// `v` made a unit vector, as `i8` values times one scale.
fn quantise(v: &[f32]) -> (f32, Vec<i8>) {
    let v = unit(v);
    let peak = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if peak > 0.0 { peak / 127.0 } else { 1.0 };
    let q = v
        .iter()
        .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (scale, q)
}

fn sign_code(bits: impl Iterator<Item = bool>, words: usize) -> Vec<u64> {
    let mut code = vec![0u64; words];
    for (i, bit) in bits.enumerate() {
        code[i / 64] |= u64::from(bit) << (i % 64);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random unit vectors.
    fn vectors(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                (0..dims)
                    .map(|_| {
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn finds_itself_first_and_survives_reopen_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors");
        let vs = vectors(500, 64, 1);
        let items: Vec<(u64, Vec<f32>)> = vs
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, v)| (i as u64, v))
            .collect();
        let mut store = VectorStore::open(&path, "m1", 64).unwrap();
        assert_eq!(store.insert(&items).unwrap(), 500);
        assert_eq!(
            store.insert(&items[..10]).unwrap(),
            0,
            "known keys are not added twice"
        );
        let hit = store.nearest(&vs[123], 3, -1.0, 50);
        assert_eq!(hit[0].0, 123);
        assert!((hit[0].1 - 1.0).abs() < 0.01, "{hit:?}");
        drop(store);

        // Half a record appended by a crash is cut off.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[7u8; 30]).unwrap();
        drop(f);
        let store = VectorStore::open(&path, "m1", 64).unwrap();
        assert_eq!(store.len(), 500);
        assert_eq!(store.nearest(&vs[499], 1, 0.5, 50)[0].0, 499);
        drop(store);

        // Another model's vectors are not mixed in.
        assert!(VectorStore::open(&path, "m2", 64).unwrap().is_empty());
    }

    #[test]
    fn floor_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = VectorStore::open(&dir.path().join("v"), "m", 32).unwrap();
        let vs = vectors(100, 32, 2);
        let items: Vec<_> = vs
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, v)| (i as u64, v))
            .collect();
        store.insert(&items).unwrap();
        // Random vectors are nearly orthogonal to each other: a high floor
        // leaves only the query's own vector.
        assert_eq!(store.nearest_exact(&vs[5], 10, 0.9).len(), 1);
        let live: HashSet<u64> = (0..30).collect();
        assert_eq!(store.compact(&live).unwrap(), 70);
        assert_eq!(store.len(), 30);
        assert!(store.contains(29) && !store.contains(30));
        assert_eq!(store.nearest_exact(&vs[7], 1, 0.0)[0].0, 7);
        let reopened = VectorStore::open(&dir.path().join("v"), "m", 32).unwrap();
        assert_eq!(reopened.len(), 30);
    }
}
