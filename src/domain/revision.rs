//! Where a package's revisions live in its bucket, as `quilt3` writes them, and which revision
//! came before the one an event is about.
//!
//! Every push writes `.quilt/named_packages/<handle>/<epoch seconds>` (and `…/latest`), each
//! holding a top hash as text; the manifest is `.quilt/packages/<top hash>`. The event fires on
//! that write, so the revision it is about is a pointer holding its top hash near the event's
//! time, and the previous revision is the pointer just older than that one. A re-push of
//! unchanged content writes a new pointer with the same hash: its previous revision has the same
//! hash too. See [`PreviousSearch`] for which pointer is the event's own.

/// One object in a bucket, at a version when it names one (physical keys of manifests do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// A version id, if the reference names one.
    pub version: Option<String>,
}

/// How many seconds a pointer may be stamped after the event's time (clock skew between the
/// client that pushed and EventBridge) and still be the one the event is about. Pointers newer
/// than that are later pushes, which must not be mistaken for this event's revision.
pub const POINTER_SKEW_SECONDS: u64 = 300;

/// The key of a manifest.
pub fn manifest_key(top_hash: &str) -> String {
    format!(".quilt/packages/{top_hash}")
}

/// The prefix under which a package's revision pointers are listed.
pub fn pointers_prefix(handle: &str) -> String {
    format!(".quilt/named_packages/{handle}/")
}

/// The revision pointers among listed keys, newest first, ignoring `latest` and anything that
/// is not a timestamp, and those stamped after `not_after` (epoch seconds), if given.
pub fn pointers_newest_first(
    prefix: &str,
    keys: &[String],
    not_after: Option<u64>,
) -> Vec<(u64, String)> {
    let mut pointers: Vec<(u64, String)> = keys
        .iter()
        .filter_map(|key| {
            let name = key.strip_prefix(prefix)?;
            let stamp = name.parse::<u64>().ok()?;
            (name.bytes().all(|b| b.is_ascii_digit())).then_some((stamp, key.clone()))
        })
        .filter(|(stamp, _)| not_after.is_none_or(|limit| *stamp <= limit))
        .collect();
    pointers.sort_by(|a, b| b.cmp(a));
    pointers
}

/// The top hash a pointer holds: its text without surrounding whitespace, if it looks like one.
pub fn pointer_hash(text: &str) -> Option<&str> {
    let hash = text.trim();
    (!hash.is_empty() && hash.len() <= 128 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(hash)
}

/// The order in which to read a package's pointers (indices into the newest-first list) to find
/// the event's own: closest to the event's time first, newer first on a tie; newest first when
/// the event has no time.
///
/// The event's own pointer is near its time: in a burst of pushes seconds apart, reading newest
/// first would spend every read on later pushes. [`PreviousSearch`] reads in this order.
pub fn closest_first(newest_first: &[(u64, String)], event_time: Option<u64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..newest_first.len()).collect();
    if let Some(t) = event_time {
        // A stable sort keeps newest-first order among equal distances.
        order.sort_by_key(|&i| newest_first[i].0.abs_diff(t));
    }
    order
}

/// Finds an event's own pointer among a package's pointers, and the previous revision: the
/// pointer just older than the own one. Sans I/O: [`step`](Self::step) names the pointer whose
/// hash it needs (an index into the newest-first list), [`feed`](Self::feed) gives it.
///
/// The event names a top hash, and its revision is the one that pointer introduced. A re-push of
/// the same content writes another pointer holding that hash, possibly seconds later, and the
/// event's time cannot tell the two apart: EventBridge stamps it a little after the push, and
/// the pushing client's clock may be off by up to [`POINTER_SKEW_SECONDS`] either way. So a
/// re-push never hides a new revision: among the pointers holding the event's hash within
/// [`POINTER_SKEW_SECONDS`] of its time, one that starts a run of that hash (its predecessor
/// holds another, or it is the oldest) is the event's own, the closest such first. Only when
/// none does is the event a re-push: its own pointer is the closest holding its hash, and the
/// previous revision has the same hash (`unchanged`). The price is that a re-push within that
/// window of the revision it repeats is taken for that revision (sent again, not skipped): a
/// duplicate email rather than a lost one.
#[derive(Debug, Clone)]
pub struct PreviousSearch {
    top_hash: String,
    event_time: Option<u64>,
    /// Stamps, newest first.
    stamps: Vec<u64>,
    /// Indices to try, closest to the event's time first, at most the read budget.
    order: Vec<usize>,
    tried: usize,
    /// Each pointer's hash once read (`Some(None)`: not a hash).
    hashes: Vec<Option<Option<String>>>,
    /// A pointer holding the hash, in the window, whose predecessor is being checked.
    checking: Option<usize>,
    /// The closest pointer holding the hash: the own one if no run starts in the window.
    closest: Option<usize>,
}

/// What a [`PreviousSearch`] needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The hash of this pointer (an index into the newest-first list).
    Read(usize),
    /// The previous revision's top hash; None for a first revision, or when the event's own
    /// pointer was not among those read.
    Done(Option<String>),
}

impl PreviousSearch {
    /// A search for the pointer of an event naming `top_hash` at `event_time` (epoch seconds),
    /// among `newest_first` pointers, trying at most `max_tries` of them for the own one (their
    /// predecessors are read on top).
    pub fn new(
        top_hash: &str,
        event_time: Option<u64>,
        newest_first: &[(u64, String)],
        max_tries: usize,
    ) -> Self {
        let mut order = closest_first(newest_first, event_time);
        order.truncate(max_tries);
        Self {
            top_hash: top_hash.to_ascii_lowercase(),
            event_time,
            stamps: newest_first.iter().map(|(stamp, _)| *stamp).collect(),
            order,
            tried: 0,
            hashes: vec![None; newest_first.len()],
            checking: None,
            closest: None,
        }
    }

    /// Gives the hash pointer `index` holds (None: its text is not a hash).
    pub fn feed(&mut self, index: usize, hash: Option<&str>) {
        if let Some(slot) = self.hashes.get_mut(index) {
            *slot = Some(hash.map(str::to_ascii_lowercase));
        }
    }

    /// The next pointer to read, or the answer.
    pub fn step(&mut self) -> Step {
        loop {
            if let Some(own) = self.checking {
                match self.predecessor(own) {
                    Err(read) => return read,
                    Ok(previous) if previous.as_deref() == Some(self.top_hash.as_str()) => {
                        // A re-push: look further for the revision it repeats.
                        self.checking = None;
                    }
                    Ok(previous) => return Step::Done(previous),
                }
            }
            let Some(&index) = self.order.get(self.tried) else {
                break;
            };
            let Some(hash) = &self.hashes[index] else {
                return Step::Read(index);
            };
            self.tried += 1;
            if hash.as_deref() != Some(self.top_hash.as_str()) {
                continue;
            }
            self.closest.get_or_insert(index);
            let distance = self
                .event_time
                .map_or(0, |t| self.stamps[index].abs_diff(t));
            if distance <= POINTER_SKEW_SECONDS {
                self.checking = Some(index);
            } else if self.event_time.is_some() {
                // Closest first: every later pointer is outside the window too.
                break;
            }
        }
        match self.closest {
            None => Step::Done(None),
            Some(own) => match self.predecessor(own) {
                Err(read) => read,
                Ok(previous) => Step::Done(previous),
            },
        }
    }

    /// The hash of the pointer just older than `own` (None: `own` is the oldest, or the older
    /// one is not a hash), or the read it needs first.
    fn predecessor(&self, own: usize) -> Result<Option<String>, Step> {
        match self.hashes.get(own + 1) {
            None => Ok(None),
            Some(None) => Err(Step::Read(own + 1)),
            Some(Some(hash)) => Ok(hash.clone()),
        }
    }
}

/// Why a physical key is not a readable S3 object.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("physical key {key:?} is not an s3:// URL of an object")]
pub struct PhysicalKeyError {
    /// The key as the manifest gives it.
    pub key: String,
}

/// Parses a physical key as `quilt3` writes it: `s3://bucket/percent-encoded/key?versionId=…`.
///
/// # Errors
/// Not `s3://`, no bucket or no key.
pub fn parse_physical_key(raw: &str) -> Result<ObjectRef, PhysicalKeyError> {
    let fail = || PhysicalKeyError {
        key: raw.to_owned(),
    };
    let rest = raw.strip_prefix("s3://").ok_or_else(fail)?;
    let (bucket, path) = rest.split_once('/').ok_or_else(fail)?;
    let (key, query) = path.split_once('?').unwrap_or((path, ""));
    let version = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("versionId="))
        .map(percent_decode)
        .filter(|v| !v.is_empty());
    let key = percent_decode(key);
    if bucket.is_empty() || key.is_empty() {
        return Err(fail());
    }
    Ok(ObjectRef {
        bucket: bucket.to_owned(),
        key,
        version,
    })
}

/// `%XX` escapes to bytes, read as UTF-8 (lossily: a key is data, never trusted to be valid).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) if hex(hi).is_some() && hex(lo).is_some() => {
                let value = hex(hi).unwrap_or(0) * 16 + hex(lo).unwrap_or(0);
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|n| format!(".quilt/named_packages/team/data/{n}"))
            .collect()
    }

    #[test]
    fn pointers_are_timestamps_newest_first_without_latest() {
        let prefix = pointers_prefix("team/data");
        let listed = keys(&[
            "1700000000",
            "latest",
            "1700000100",
            "notes.txt",
            "1600000000",
        ]);
        let stamps: Vec<u64> = pointers_newest_first(&prefix, &listed, None)
            .into_iter()
            .map(|(stamp, _)| stamp)
            .collect();
        assert_eq!(stamps, [1_700_000_100, 1_700_000_000, 1_600_000_000]);
        let until: Vec<u64> = pointers_newest_first(&prefix, &listed, Some(1_700_000_050))
            .into_iter()
            .map(|(stamp, _)| stamp)
            .collect();
        assert_eq!(
            until,
            [1_700_000_000, 1_600_000_000],
            "later pushes skipped"
        );
    }

    #[test]
    fn a_package_of_another_handle_sharing_the_prefix_is_not_read() {
        let prefix = pointers_prefix("team/data");
        let listed = vec![".quilt/named_packages/team/data2/1700000000".to_owned()];
        assert!(pointers_newest_first(&prefix, &listed, None).is_empty());
    }

    /// The previous revision found the way the details reader finds it, over pointers given
    /// newest first as (stamp, hash); and how many pointers it read.
    fn previous(
        own: &str,
        event_time: Option<u64>,
        pointers: &[(u64, &str)],
    ) -> (Option<String>, usize) {
        let list: Vec<(u64, String)> = pointers
            .iter()
            .map(|(s, h)| (*s, (*h).to_owned()))
            .collect();
        let mut search = PreviousSearch::new(own, event_time, &list, 20);
        let mut reads = 0;
        loop {
            match search.step() {
                Step::Read(i) => {
                    reads += 1;
                    assert!(reads <= 2 * list.len(), "the search loops");
                    search.feed(i, pointer_hash(&list[i].1));
                }
                Step::Done(previous) => return (previous, reads),
            }
        }
    }

    #[test]
    fn the_previous_revision_is_the_pointer_after_the_events_own() {
        let pointers = [(300, "ccc"), (200, "bbb"), (100, "aaa")];
        assert_eq!(
            previous("bbb", Some(200), &pointers).0.as_deref(),
            Some("aaa")
        );
        assert_eq!(previous("bbb", None, &pointers).0.as_deref(), Some("aaa"));
        assert_eq!(
            previous("aaa", Some(100), &pointers).0,
            None,
            "first revision"
        );
    }

    #[test]
    fn a_re_push_long_after_the_revision_it_repeats_has_its_own_hash_as_previous() {
        let pointers = [(1_000, "bbb"), (100, "bbb"), (50, "aaa")];
        assert_eq!(
            previous("bbb", Some(1_000), &pointers).0.as_deref(),
            Some("bbb")
        );
        // A run of re-pushes (nightly, say): each one's predecessor is the one before.
        let nightly = [(3_000, "bbb"), (2_000, "bbb"), (1_000, "bbb"), (50, "aaa")];
        assert_eq!(
            previous("bbb", Some(2_001), &nightly).0.as_deref(),
            Some("bbb")
        );
    }

    #[test]
    fn a_re_push_never_hides_the_new_revision_it_repeats() {
        // bbb pushed at 10_130 and again, unchanged, at 10_133.
        let pointers = [(10_133, "bbb"), (10_130, "bbb"), (10_100, "aaa")];
        for t in 10_125..=10_140 {
            assert_eq!(
                previous("bbb", Some(t), &pointers).0.as_deref(),
                Some("aaa"),
                "an event at {t}"
            );
        }
        // A client clock four minutes behind EventBridge's, or ahead.
        for t in [10_130 + 240, 10_130 - 240] {
            assert_eq!(
                previous("bbb", Some(t), &pointers).0.as_deref(),
                Some("aaa"),
                "an event at {t}"
            );
        }
        // Without a time, the newest pointer that starts a run of the hash.
        assert_eq!(previous("bbb", None, &pointers).0.as_deref(), Some("aaa"));
        let reverted = [(160, "bbb"), (150, "aaa"), (133, "bbb"), (130, "bbb")];
        assert_eq!(previous("bbb", None, &reverted).0.as_deref(), Some("aaa"));
    }

    #[test]
    fn a_first_revision_stays_first_when_the_same_content_is_pushed_again() {
        // v1 at 100, re-pushed unchanged at 160; v1's event is handled after the re-push.
        let pointers = [(160, "aaa"), (100, "aaa")];
        assert_eq!(previous("aaa", Some(100), &pointers).0, None);
        assert_eq!(previous("aaa", Some(150), &pointers).0, None);
        // The re-push's own event, within the pointer skew of v1, is taken for v1: sent again,
        // never skipped. Later than that, it is a re-push.
        assert_eq!(previous("aaa", Some(160), &pointers).0, None);
        let later = [(1_000, "aaa"), (100, "aaa")];
        assert_eq!(
            previous("aaa", Some(1_000), &later).0.as_deref(),
            Some("aaa")
        );
    }

    #[test]
    fn a_revert_is_diffed_against_its_own_predecessor() {
        // A at 100, B at 130, A again at 160.
        let pointers = [(160, "aaa"), (130, "bbb"), (100, "aaa")];
        assert_eq!(previous("aaa", Some(101), &pointers).0, None);
        assert_eq!(
            previous("aaa", Some(161), &pointers).0.as_deref(),
            Some("bbb")
        );
        assert_eq!(
            previous("bbb", Some(130), &pointers).0.as_deref(),
            Some("aaa")
        );
    }

    #[test]
    fn in_a_burst_the_events_own_pointer_is_read_first_not_after_every_later_push() {
        // 100 pushes a second apart; the event of push 10 is handled after all of them.
        let hashes: Vec<String> = (0..100).map(|i| format!("{i:064x}")).collect();
        let pointers: Vec<(u64, &str)> = (0..100u64)
            .rev()
            .map(|i| (1_000 + i, hashes[i as usize].as_str()))
            .collect();
        let (found, reads) = previous(&hashes[10], Some(1_010), &pointers);
        assert_eq!(found.as_deref(), Some(hashes[9].as_str()));
        assert_eq!(reads, 2, "its own pointer, then the one before it");
    }

    #[test]
    fn pointer_texts_must_look_like_hashes() {
        assert_eq!(pointer_hash("abc123\n"), Some("abc123"));
        assert_eq!(pointer_hash(""), None);
        assert_eq!(pointer_hash("../../etc"), None);
        assert_eq!(pointer_hash(&"a".repeat(200)), None);
    }

    #[test]
    fn physical_keys_are_decoded_with_their_version() {
        let object =
            parse_physical_key("s3://bucket/dir/a%20b%2Bc%C3%A9.csv?versionId=v1%2Bx").expect("ok");
        assert_eq!(object.bucket, "bucket");
        assert_eq!(object.key, "dir/a b+cé.csv");
        assert_eq!(object.version.as_deref(), Some("v1+x"));
        let plain = parse_physical_key("s3://b/README.md").expect("ok");
        assert_eq!(plain.version, None);
        for bad in [
            "https://b/k",
            "s3://b",
            "s3:///k",
            "s3://b/",
            "s3://b/?versionId=1",
        ] {
            assert!(parse_physical_key(bad).is_err(), "{bad}");
        }
        let hostile = parse_physical_key("s3://b/%ZZ%ff%0d%0a").expect("kept as data");
        assert_eq!(hostile.key, "%ZZ\u{fffd}\r\n");
    }
}
