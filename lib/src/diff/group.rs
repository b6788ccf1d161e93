//! Patch groups (SPEC.md §6.1): neighbouring patches' contents planned into groups of about
//! [`GROUP_CONTENT`] bytes and compressed together, round by round as the chunks are encoded,
//! so the contents held at once stay bounded whatever the image's size.

use rayon::prelude::*;

use crate::chunk::ChunkSpan;
use crate::codec::{self, GroupExtra, PatchContent};
use crate::format::Limits;
use crate::format::manifest::{GroupMember, PatchBase};

/// Patch content (spelled sparsely) joined into one group before compression: the format's
/// group limit, so LZMA2 finds the repeats between as many neighbouring patches as a device
/// may hold (the measurements: BENCHMARKS.md, "Tuning record"). A group whose blob would
/// outgrow the blob limit (content that does not compress) is split in two until it fits.
pub(super) const GROUP_CONTENT: usize = 8 << 20;

/// One chunk's encoding: a copy's source offset, all zero, a patch (base and content),
/// a literal blob.
#[derive(Default)]
pub(super) struct Encoded {
    pub(super) copy: Option<u64>,
    pub(super) zero: bool,
    /// The patch's base and its bsdiff-class content (compressed in its group, then emptied).
    pub(super) patch: Option<(PatchBase, PatchContent)>,
    pub(super) literal: Option<Vec<u8>>,
}

/// A compressed patch group: its members (chunk indexes, in target order) with their stream
/// lengths, and its blob.
pub(super) struct Group {
    pub(super) members: Vec<(usize, GroupMember)>,
    pub(super) blob: Vec<u8>,
    /// For an extra base's group, each member's patch base (set after grouping).
    pub(super) bases: Vec<PatchBase>,
}

/// The groups of `encoded` planned over the whole list at once: what [`encode_grouped`]
/// must produce round by round.
#[cfg(test)]
fn group_patches(encoded: &[Encoded], limits: &Limits, group_content: usize) -> Vec<Group> {
    let mut planner = GroupPlanner::new(group_content);
    for (i, e) in encoded.iter().enumerate() {
        planner.add(i, e);
    }
    compress_groups(encoded, planner.take(true), limits)
}

/// Plans groups in target order: a patch joins the open group while its content (sized by
/// the sparse spelling, which is never longer and usually far shorter: the differences are
/// mostly zero, so more neighbours share a group's context) stays within `limit` bytes
/// ([`GROUP_CONTENT`]).
struct GroupPlanner {
    /// Planned groups' members; the last is open.
    plans: Vec<Vec<usize>>,
    /// The open group's content length.
    size: usize,
    limit: usize,
}

impl GroupPlanner {
    fn new(limit: usize) -> GroupPlanner {
        GroupPlanner {
            plans: Vec::new(),
            size: 0,
            limit,
        }
    }

    /// Adds chunk `i`, if it has a patch.
    fn add(&mut self, i: usize, e: &Encoded) {
        let Some((_, content)) = &e.patch else {
            return;
        };
        let len = content.len(true);
        match self.plans.last_mut() {
            Some(last) if self.size + len <= self.limit => last.push(i),
            _ => {
                self.plans.push(vec![i]);
                self.size = 0;
            }
        }
        self.size += len;
    }

    /// The planned groups no later patch can join: all of them when `all`, else all but the
    /// open one.
    fn take(&mut self, all: bool) -> Vec<Vec<usize>> {
        let keep = usize::from(!all).min(self.plans.len());
        let open = self.plans.split_off(self.plans.len() - keep);
        std::mem::replace(&mut self.plans, open)
    }

    /// The first chunk of the open group, if any.
    fn open_from(&self) -> Option<usize> {
        self.plans.last().and_then(|p| p.first().copied())
    }
}

/// Compresses planned groups (neighbouring patch contents, in target order, of about
/// [`GROUP_CONTENT`] bytes: [`GroupPlanner`]), on all cores. A group's content is its
/// members' control records, then their difference gaps, then their difference values, then
/// their extra bytes (SPEC.md §6.1): each stream compresses best next to its kind. The extra
/// bytes are compressed once, with the branch filter that suits them; the rest with the
/// differences spelled sparsely and densely, and the smaller kept. A group whose blob outgrows
/// the blob limit is split in halves; a single patch that still fails is dropped, and its
/// chunk keeps its literal.
fn compress_groups(encoded: &[Encoded], plans: Vec<Vec<usize>>, limits: &Limits) -> Vec<Group> {
    plans
        .into_par_iter()
        .flat_map_iter(|members| fitting_groups(encoded, &members, limits))
        .collect()
}

/// Target bytes encoded per round on each core before the groups they close are compressed.
const ROUND_BYTES_PER_CORE: u64 = 2 * GROUP_CONTENT as u64;

/// Encodes every chunk of `spans` with `encode` (given its index; on all cores) and groups
/// the patches exactly as planning over the whole list would, but round by round: after each
/// round of about [`ROUND_BYTES_PER_CORE`] target bytes a core, the groups no later patch can
/// join are compressed and their members' contents freed. The contents held at once are a
/// round's and one open group's, whatever the image's size. Returns the encodings (their
/// patch contents emptied) and the groups in target order; `None` if `encode` fails.
pub(super) fn encode_grouped(
    spans: &[ChunkSpan],
    limits: &Limits,
    encode: impl Fn(usize, &ChunkSpan) -> Option<Encoded> + Sync,
) -> Option<(Vec<Encoded>, Vec<Group>)> {
    let round_bytes = ROUND_BYTES_PER_CORE.saturating_mul(rayon::current_num_threads() as u64);
    encode_in_rounds(spans, limits, (round_bytes, GROUP_CONTENT), encode)
}

/// [`encode_grouped`] with rounds of `round_bytes` target bytes and groups of `group_content`.
fn encode_in_rounds(
    spans: &[ChunkSpan],
    limits: &Limits,
    (round_bytes, group_content): (u64, usize),
    encode: impl Fn(usize, &ChunkSpan) -> Option<Encoded> + Sync,
) -> Option<(Vec<Encoded>, Vec<Group>)> {
    let mut encoded: Vec<Encoded> = Vec::with_capacity(spans.len());
    let mut groups = Vec::new();
    let mut planner = GroupPlanner::new(group_content);
    let mut freed = 0;
    let mut rest = spans;
    while !rest.is_empty() {
        let mut bytes = 0u64;
        let take = rest
            .iter()
            .take_while(|s| {
                let fits = bytes < round_bytes;
                bytes += u64::from(s.len);
                fits
            })
            .count();
        let (round, later) = rest.split_at(take);
        rest = later;
        let first = encoded.len();
        let round = round.par_iter().enumerate();
        encoded.extend(
            round
                .map(|(k, s)| encode(first + k, s))
                .collect::<Option<Vec<_>>>()?,
        );
        for (i, e) in encoded.iter().enumerate().skip(first) {
            planner.add(i, e);
        }
        groups.extend(compress_groups(
            &encoded,
            planner.take(rest.is_empty()),
            limits,
        ));
        let open = planner.open_from().unwrap_or(encoded.len());
        for e in encoded.get_mut(freed..open).into_iter().flatten() {
            if let Some((_, content)) = &mut e.patch {
                *content = PatchContent::default();
            }
        }
        freed = freed.max(open);
    }
    Some((encoded, groups))
}

/// The group of `members`, or if its blob outgrows the blob limit, the groups of each half,
/// in order.
fn fitting_groups(encoded: &[Encoded], members: &[usize], limits: &Limits) -> Vec<Group> {
    if let Some(group) = smallest_group(encoded, members, limits) {
        return vec![group];
    }
    if members.len() < 2 {
        return Vec::new();
    }
    let (a, b) = members.split_at(members.len() / 2);
    let (mut first, second) = rayon::join(
        || fitting_groups(encoded, a, limits),
        || fitting_groups(encoded, b, limits),
    );
    first.extend(second);
    first
}

/// The smaller blob of `members` with their differences spelled sparsely or densely (where
/// the dense content fits the group limit); `None` if neither fits the blob limit.
fn smallest_group(encoded: &[Encoded], members: &[usize], limits: &Limits) -> Option<Group> {
    let max_blob = limits.max_blob_len;
    let extra: Vec<u8> = members
        .iter()
        .filter_map(|&i| Some(encoded.get(i)?.patch.as_ref()?.1.streams(true)[3]))
        .flatten()
        .copied()
        .collect();
    let extra = GroupExtra::new(&extra)?;
    let sparse = group(encoded, members, true, &extra, max_blob);
    let dense_len: usize = members
        .iter()
        .filter_map(|&i| Some(encoded.get(i)?.patch.as_ref()?.1.len(false)))
        .sum();
    let dense = (dense_len <= limits.max_group_len as usize)
        .then(|| group(encoded, members, false, &extra, max_blob))
        .flatten();
    sparse.into_iter().chain(dense).min_by_key(|g| g.blob.len())
}

/// Compresses one group of `members` (chunk indexes), their differences spelled sparsely or
/// densely, with their compressed `extra` bytes; `None` if it fails or its blob outgrows
/// `max_blob`.
fn group(
    encoded: &[Encoded],
    members: &[usize],
    sparse: bool,
    extra: &GroupExtra,
    max_blob: u32,
) -> Option<Group> {
    let streams = members
        .iter()
        .map(|&i| Some((i, encoded.get(i)?.patch.as_ref()?.1.streams(sparse))))
        .collect::<Option<Vec<_>>>()?;
    let mut head = Vec::new();
    for stream in 0..3 {
        for (_, s) in &streams {
            head.extend_from_slice(s.get(stream)?);
        }
    }
    let gaps_at = streams.iter().map(|(_, [ctrl, ..])| ctrl.len()).sum();
    let blob = codec::encode_group(&head, gaps_at, extra)?;
    let members = streams
        .iter()
        .map(|(i, [ctrl, gaps, values, extra])| {
            let member = GroupMember {
                ctrl_len: u32::try_from(ctrl.len()).ok()?,
                gaps_len: u32::try_from(gaps.len()).ok()?,
                values_len: u32::try_from(values.len()).ok()?,
                extra_len: u32::try_from(extra.len()).ok()?,
                ..GroupMember::default() // offsets: Manifest::link_groups
            };
            Some((*i, member))
        })
        .collect::<Option<Vec<_>>>()?;
    (blob.len() <= max_blob as usize).then_some(Group {
        members,
        blob,
        bases: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round by round, the groups are those planned over the whole list (the same members,
    /// the same blobs), and every patch content is freed by the end.
    #[test]
    fn groups_made_round_by_round_are_those_of_the_whole_list() {
        let spans: Vec<ChunkSpan> = (0..40u32)
            .map(|i| ChunkSpan {
                offset: u64::from(i) * 1000,
                len: 1000,
                hash: [0; 16],
            })
            .collect();
        let encode = |i: usize, _: &ChunkSpan| {
            // Every fifth chunk has no patch; the others' contents vary in length.
            let data: Vec<u8> = (0..(i % 7 + 1) * 700)
                .map(|j| (i * 31 + j * 7) as u8)
                .collect();
            Some(Encoded {
                copy: None,
                zero: false,
                patch: (!i.is_multiple_of(5))
                    .then(|| (PatchBase::empty(), codec::raw_content(&data))),
                literal: None,
            })
        };
        let whole: Vec<Encoded> = spans
            .iter()
            .enumerate()
            .filter_map(|(i, s)| encode(i, s))
            .collect();
        let limits = Limits::DEFAULT;
        let expected = group_patches(&whole, &limits, 8000);
        assert!(expected.len() > 5, "{} groups", expected.len());
        let (encoded, groups) = encode_in_rounds(&spans, &limits, (3000, 8000), encode).unwrap();
        let view = |g: &[Group]| -> Vec<(Vec<usize>, Vec<u8>)> {
            g.iter()
                .map(|g| (g.members.iter().map(|&(i, _)| i).collect(), g.blob.clone()))
                .collect()
        };
        assert_eq!(view(&groups), view(&expected));
        assert!(
            encoded
                .iter()
                .all(|e| e.patch.as_ref().is_none_or(|(_, c)| c.len(false) == 0))
        );
        assert_eq!(encoded.iter().filter(|e| e.patch.is_some()).count(), 32);
    }

    #[test]
    fn a_group_that_outgrows_the_blob_limit_is_split() {
        // Four patches of 60 000 bytes that do not compress, against a 100 000-byte blob
        // limit: together, and in halves, they outgrow it; alone each fits.
        let mut state = 7u64;
        let encoded: Vec<Encoded> = (0..4)
            .map(|_| {
                let data: Vec<u8> = (0..60_000)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1);
                        (state >> 56) as u8
                    })
                    .collect();
                Encoded {
                    copy: None,
                    zero: false,
                    patch: Some((PatchBase::empty(), codec::raw_content(&data))),
                    literal: None,
                }
            })
            .collect();
        let limits = Limits {
            max_blob_len: 100_000,
            ..Limits::DEFAULT
        };
        let groups = group_patches(&encoded, &limits, GROUP_CONTENT);
        let members: Vec<Vec<usize>> = groups
            .iter()
            .map(|g| g.members.iter().map(|&(i, _)| i).collect())
            .collect();
        assert_eq!(members, vec![vec![0], vec![1], vec![2], vec![3]]);
        assert!(groups.iter().all(|g| g.blob.len() <= 100_000));
    }
}
