//! Speech regions grouped into whisper inputs ([`chunks`], a pure function).
//!
//! whisper.cpp encodes a full 30 s window whatever the input's length, so a
//! call costs about the same for 2 s of speech as for 25: regions are packed
//! together. A chunk is the regions' audio with long gaps between them cut
//! short ([`ChunkParams::max_gap_s`]): whisper sees natural pauses but no long
//! silences or music, where small models make words up. Its
//! [`Piece`]s map chunk time back to file time.

use crate::vad::Region;

/// How regions are grouped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkParams {
    /// Most audio in one chunk; whisper's window is 30 s.
    pub max_len_s: f64,
    /// Gaps between regions up to this long stay in the chunk; longer ones
    /// are left out (the regions' own padding stays on either side).
    pub max_gap_s: f64,
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self {
            max_len_s: 24.0,
            max_gap_s: 1.0,
        }
    }
}

/// A contiguous stretch of the file inside a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Where it starts in the file, in samples.
    pub file_start: usize,
    /// Where it starts in the chunk, in samples.
    pub chunk_start: usize,
    pub len: usize,
}

/// One whisper input: pieces of the file, back to back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub pieces: Vec<Piece>,
}

impl Chunk {
    /// Samples in the chunk.
    pub fn len(&self) -> usize {
        self.pieces.last().map_or(0, |p| p.chunk_start + p.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunk's samples, copied out of the file's.
    pub fn audio(&self, file: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.len());
        for p in &self.pieces {
            let end = (p.file_start + p.len).min(file.len());
            out.extend_from_slice(&file[p.file_start.min(end)..end]);
        }
        out
    }

    /// The file sample at chunk sample `t`. At a seam between two pieces a
    /// start (`end == false`) maps to the later piece, an end to the earlier.
    pub fn to_file(&self, t: usize, end: bool) -> usize {
        let inside = |p: &&Piece| {
            if end {
                t <= p.chunk_start + p.len
            } else {
                t < p.chunk_start + p.len
            }
        };
        match self.pieces.iter().find(inside).or(self.pieces.last()) {
            Some(p) => p.file_start + t.saturating_sub(p.chunk_start).min(p.len),
            None => t,
        }
    }
}

/// Groups `regions` (sorted, not overlapping) into as few chunks of at most
/// `max_len_s` of audio as possible and, among the ways to do that, cuts
/// at the widest gaps (largest sum), so that chunks break where speakers
/// paused longest. A single region longer than the limit is a chunk of
/// its own (the VAD already cuts regions to a shorter length).
pub fn chunks(regions: &[Region], p: &ChunkParams) -> Vec<Chunk> {
    let max_len = (p.max_len_s * 16_000.0) as usize;
    let max_gap = (p.max_gap_s * 16_000.0) as usize;
    let n = regions.len();
    // best[i]: (chunks, sum of gaps cut at, first region of the last chunk)
    // for regions[..i]. Dynamic programming over where the last chunk starts.
    let mut best: Vec<Option<(usize, usize, usize)>> = vec![None; n + 1];
    best[0] = Some((0, 0, 0));
    for i in 1..=n {
        let mut len = 0;
        for j in (0..i).rev() {
            len += regions[j].len();
            if j + 1 < i && gap(regions, j) <= max_gap {
                len += gap(regions, j);
            }
            if len > max_len && j + 1 < i {
                break;
            }
            let Some((count, cut_sum, _)) = best[j] else {
                continue;
            };
            let cut = if j > 0 { gap(regions, j - 1) } else { 0 };
            let candidate = (count + 1, cut_sum + cut, j);
            let better = match best[i] {
                None => true,
                Some((c, s, _)) => candidate.0 < c || (candidate.0 == c && candidate.1 > s),
            };
            if better {
                best[i] = Some(candidate);
            }
        }
    }
    let mut out = Vec::new();
    let mut i = n;
    while i > 0 {
        let Some((_, _, j)) = best[i] else { break };
        out.push(assemble(&regions[j..i], max_gap));
        i = j;
    }
    out.reverse();
    out
}

fn gap(regions: &[Region], i: usize) -> usize {
    regions[i + 1].start.saturating_sub(regions[i].end)
}

fn assemble(regions: &[Region], max_gap: usize) -> Chunk {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut at = 0;
    for (i, r) in regions.iter().enumerate() {
        match pieces.last_mut() {
            Some(last) if gap(regions, i - 1) <= max_gap => {
                let grown = r.end - last.file_start;
                at += grown - last.len;
                last.len = grown;
            }
            _ => {
                pieces.push(Piece {
                    file_start: r.start,
                    chunk_start: at,
                    len: r.len(),
                });
                at += r.len();
            }
        }
    }
    Chunk { pieces }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regions from (start, end) in seconds.
    fn regions(spans: &[(f64, f64)]) -> Vec<Region> {
        spans
            .iter()
            .map(|&(s, e)| Region {
                start: (s * 16_000.0) as usize,
                end: (e * 16_000.0) as usize,
            })
            .collect()
    }

    /// Each chunk as its pieces' (file start, file end) in seconds.
    fn spans(chunks: &[Chunk]) -> Vec<Vec<(f64, f64)>> {
        chunks
            .iter()
            .map(|c| {
                c.pieces
                    .iter()
                    .map(|p| {
                        (
                            p.file_start as f64 / 16_000.0,
                            (p.file_start + p.len) as f64 / 16_000.0,
                        )
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn close_regions_share_one_piece_and_far_ones_are_butted_together() {
        let r = regions(&[(1.0, 3.0), (3.5, 5.0), (20.0, 22.0)]);
        let c = chunks(&r, &ChunkParams::default());
        assert_eq!(spans(&c), [vec![(1.0, 5.0), (20.0, 22.0)]]);
        assert_eq!(c[0].len(), 6 * 16_000);
        assert_eq!(c[0].pieces[1].chunk_start, 4 * 16_000);
    }

    #[test]
    fn too_much_speech_makes_the_fewest_chunks_cut_at_the_widest_gaps() {
        // 4 regions of 8 s; gaps of 0.5, 0.9 and 0.7 s: 33.6 s in all.
        let r = regions(&[(0.0, 8.0), (8.5, 16.5), (17.4, 25.4), (26.1, 34.1)]);
        let c = chunks(&r, &ChunkParams::default());
        assert_eq!(spans(&c), [vec![(0.0, 16.5)], vec![(17.4, 34.1)]]);
        // With a 10 s limit every region is its own chunk.
        let c = chunks(
            &r,
            &ChunkParams {
                max_len_s: 10.0,
                ..Default::default()
            },
        );
        assert_eq!(c.len(), 4);
        // Left-out gaps do not count towards the length.
        let r = regions(&[(0.0, 10.0), (100.0, 110.0), (200.0, 203.0)]);
        assert_eq!(chunks(&r, &ChunkParams::default()).len(), 1);
        // Nine 5 s sentences 0.4 s apart, the first pause 0.5 s: three
        // chunks (not one per widest gap), the first cut at the 0.5 s pause.
        let spans_in: Vec<(f64, f64)> = (0..9)
            .map(|i| {
                let s = 0.1 + 5.4 * i as f64 + if i > 0 { 0.1 } else { 0.0 };
                (s, s + 5.0)
            })
            .collect();
        let c = chunks(&regions(&spans_in), &ChunkParams::default());
        let sizes: Vec<usize> = c
            .iter()
            .map(|c| ((c.len() as f64 / 16_000.0 + 0.4) / 5.4).round() as usize)
            .collect();
        assert_eq!(sizes, [1, 4, 4]);
    }

    #[test]
    fn a_region_longer_than_the_limit_is_still_one_chunk() {
        let r = regions(&[(0.0, 40.0)]);
        assert_eq!(
            spans(&chunks(&r, &ChunkParams::default())),
            [vec![(0.0, 40.0)]]
        );
        assert!(chunks(&[], &ChunkParams::default()).is_empty());
    }

    #[test]
    fn chunk_times_map_back_to_file_times() {
        let r = regions(&[(1.0, 3.0), (20.0, 22.0)]);
        let c = &chunks(&r, &ChunkParams::default())[0];
        let s = |x: f64| (x * 16_000.0) as usize;
        assert_eq!(c.to_file(s(0.5), false), s(1.5));
        assert_eq!(c.to_file(s(2.0), false), s(20.0));
        assert_eq!(c.to_file(s(2.0), true), s(3.0));
        assert_eq!(c.to_file(s(3.0), true), s(21.0));
        assert_eq!(
            c.to_file(s(9.0), true),
            s(22.0),
            "clamped to the last piece"
        );
        let file: Vec<f32> = (0..s(25.0)).map(|i| i as f32).collect();
        let audio = c.audio(&file);
        assert_eq!(audio.len(), s(4.0));
        assert_eq!(audio[s(2.0)], s(20.0) as f32);
    }
}
