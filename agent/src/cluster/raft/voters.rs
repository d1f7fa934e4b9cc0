//! Which members vote: a pure function of the membership and each member's health, so that a
//! voter gone for long is replaced without a person and the voter count stays odd.

use std::collections::BTreeSet;
use std::time::Duration;

/// What the leader knows of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub id: u64,
    /// Answered within the liveness window (and, for a learner, caught up with the log).
    pub ready: bool,
    /// How long it has not answered (zero when it answers).
    pub silent_for: Duration,
}

/// The voter set the leader should move to, or `None` to keep the current one.
///
/// - The target size is the largest odd number not above `max_voters` and the member count
///   (1, 3 or 5 voters: an even count adds no fault tolerance).
/// - A voter silent for `replace_after` or longer is replaced by a ready learner; without one
///   it stays (shrinking 3 voters to 2 would make every further loss fatal).
/// - Ready learners are promoted (lowest id first) until the target is reached.
/// - The leader is never removed.
pub fn plan(
    voters: &BTreeSet<u64>,
    members: &[Health],
    leader: u64,
    max_voters: usize,
    replace_after: Duration,
) -> Option<BTreeSet<u64>> {
    let mut target = max_voters.min(members.len()).max(1);
    if target.is_multiple_of(2) {
        target -= 1;
    }
    let health = |id: u64| members.iter().find(|h| h.id == id);
    let gone = |id: u64| {
        id != leader && health(id).is_none_or(|h| !h.ready && h.silent_for >= replace_after)
    };
    let mut learners: Vec<u64> = members
        .iter()
        .filter(|h| h.ready && !voters.contains(&h.id))
        .map(|h| h.id)
        .collect();
    learners.sort();
    let mut next: BTreeSet<u64> = voters.clone();
    // Replace gone voters, one learner each.
    for v in voters.iter().copied().filter(|&v| gone(v)) {
        if learners.is_empty() {
            break;
        }
        next.remove(&v);
        next.insert(learners.remove(0));
    }
    // Grow to the target.
    while next.len() < target && !learners.is_empty() {
        next.insert(learners.remove(0));
    }
    // An even count is kept odd by promoting one more, or by dropping a gone voter.
    if next.len().is_multiple_of(2) {
        if let Some(v) = next.iter().copied().find(|&v| gone(v)) {
            next.remove(&v);
        } else if !learners.is_empty() && next.len() < max_voters {
            next.insert(learners.remove(0));
        }
    }
    (next != *voters).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(30);

    fn ok(id: u64) -> Health {
        Health {
            id,
            ready: true,
            silent_for: Duration::ZERO,
        }
    }

    fn silent(id: u64, secs: u64) -> Health {
        Health {
            id,
            ready: false,
            silent_for: Duration::from_secs(secs),
        }
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_second_node_stays_a_learner_and_a_third_makes_three_voters() {
        assert_eq!(plan(&set(&[1]), &[ok(1), ok(2)], 1, 3, AFTER), None);
        assert_eq!(
            plan(&set(&[1]), &[ok(1), ok(2), ok(3)], 1, 3, AFTER),
            Some(set(&[1, 2, 3]))
        );
    }

    #[test]
    fn workers_beyond_the_maximum_stay_learners() {
        let m = [ok(1), ok(2), ok(3), ok(4), ok(5)];
        assert_eq!(plan(&set(&[1, 2, 3]), &m, 1, 3, AFTER), None);
        assert_eq!(
            plan(&set(&[1, 2, 3]), &m, 1, 5, AFTER),
            Some(set(&[1, 2, 3, 4, 5]))
        );
    }

    #[test]
    fn a_voter_gone_for_long_is_replaced_by_a_ready_learner() {
        let m = [ok(1), ok(2), silent(3, 31), ok(4), silent(5, 100)];
        assert_eq!(
            plan(&set(&[1, 2, 3]), &m, 1, 3, AFTER),
            Some(set(&[1, 2, 4]))
        );
    }

    #[test]
    fn a_briefly_silent_voter_is_kept() {
        let m = [ok(1), ok(2), silent(3, 5), ok(4)];
        assert_eq!(plan(&set(&[1, 2, 3]), &m, 1, 3, AFTER), None);
    }

    #[test]
    fn without_a_learner_a_gone_voter_stays() {
        let m = [ok(1), ok(2), silent(3, 300)];
        assert_eq!(plan(&set(&[1, 2, 3]), &m, 1, 3, AFTER), None);
    }

    #[test]
    fn the_leader_is_never_removed_and_unready_learners_are_not_promoted() {
        let m = [silent(1, 300), ok(2), ok(3), silent(4, 300)];
        assert_eq!(plan(&set(&[1, 2, 3]), &m, 1, 3, AFTER), None);
    }

    #[test]
    fn the_count_stays_odd() {
        for n in 1..8u64 {
            let m: Vec<Health> = (1..=n).map(ok).collect();
            for max in [1, 3, 5] {
                let next = plan(&set(&[1]), &m, 1, max, AFTER).unwrap_or(set(&[1]));
                assert_eq!(next.len() % 2, 1, "{n} members, max {max}: {next:?}");
                assert!(next.len() <= max);
            }
        }
    }
}
