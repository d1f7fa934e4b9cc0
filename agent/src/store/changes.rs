//! Which kinds of object changed, and when: so a loop that cares about Pods and Services is
//! not woken (and does not read the store again) for every ConfigMap or Event written.
//!
//! Every commit records, for each object it wrote, its revision under two topics: the kind
//! (`Pod`) and the kind in its namespace (`Pod/web`). A [`Changes`] follows a set of topics and
//! wakes only when one of them moves. A restore from a snapshot moves [`EVERYTHING`].

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::sync::watch;

/// The topic every follower hears: a change that cannot be narrowed down (a snapshot).
pub const EVERYTHING: &str = "*";

/// The last revision at which each topic changed.
pub type Topics = BTreeMap<String, i64>;

/// The topics an object is heard under: its kind, and its kind in its namespace.
pub fn topics_of(obj: &Value) -> [String; 2] {
    let kind = obj["kind"].as_str().unwrap_or("");
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    [kind.to_string(), format!("{kind}/{ns}")]
}

/// Records that `objects` changed at `rev`.
pub fn touch<'a>(topics: &mut Topics, objects: impl IntoIterator<Item = &'a Value>, rev: i64) {
    for o in objects {
        for t in topics_of(o) {
            topics.insert(t, rev);
        }
    }
}

/// The latest revision among `follow` (and [`EVERYTHING`]); 0 when none changed yet.
pub fn latest<T: AsRef<str>>(topics: &Topics, follow: &[T]) -> i64 {
    follow
        .iter()
        .map(AsRef::as_ref)
        .chain([EVERYTHING])
        .filter_map(|t| topics.get(t))
        .copied()
        .max()
        .unwrap_or(0)
}

/// A follower of some topics of the store's changes (see [`crate::store::Store::changes`]).
pub struct Changes {
    rx: watch::Receiver<Topics>,
    follow: Vec<String>,
    seen: i64,
}

impl Changes {
    pub(super) fn new(rx: watch::Receiver<Topics>, follow: Vec<String>) -> Changes {
        let mut c = Changes {
            rx,
            follow,
            seen: 0,
        };
        c.mark_seen();
        c
    }

    /// The latest revision at which a followed topic changed.
    pub fn revision(&self) -> i64 {
        latest(&self.rx.borrow(), &self.follow)
    }

    /// Follows these topics from now on (kinds, or `Kind/namespace`).
    pub fn follow(&mut self, topics: Vec<String>) {
        self.follow = topics;
    }

    /// Counts everything so far as seen: [`Changes::changed`] waits for what comes next.
    pub fn mark_seen(&mut self) {
        self.seen = latest(&self.rx.borrow_and_update(), &self.follow);
    }

    /// Waits until a followed topic changes after what was seen last, and marks it seen. Errs
    /// when the store is gone.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        loop {
            let now = latest(&self.rx.borrow_and_update(), &self.follow);
            if now > self.seen {
                self.seen = now;
                return Ok(());
            }
            self.rx.changed().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(kind: &str, ns: &str) -> Value {
        json!({"kind": kind, "metadata": {"namespace": ns, "name": "x"}})
    }

    fn follow(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_commit_moves_the_kind_and_the_kind_in_its_namespace() {
        let mut t = Topics::new();
        touch(&mut t, [&obj("Pod", "web"), &obj("ConfigMap", "db")], 7);
        assert_eq!(latest(&t, &follow(&["Pod"])), 7);
        assert_eq!(latest(&t, &follow(&["Pod/web"])), 7);
        assert_eq!(latest(&t, &follow(&["Pod/db"])), 0);
        assert_eq!(latest(&t, &follow(&["ConfigMap/web", "Service"])), 0);
        assert_eq!(latest(&t, &follow(&["ConfigMap/db", "Service"])), 7);
        touch(&mut t, [&obj("Node", "")], 9);
        assert_eq!(latest(&t, &follow(&["Pod", "Node"])), 9);
        assert_eq!(latest(&t, &follow(&["Pod"])), 7);
        t.insert(EVERYTHING.into(), 12);
        assert_eq!(latest(&t, &follow(&["Pod"])), 12);
        assert_eq!(latest::<&str>(&t, &[]), 12);
    }

    #[tokio::test]
    async fn a_follower_wakes_only_for_its_topics() {
        let (tx, rx) = watch::channel(Topics::new());
        let mut c = Changes::new(rx, follow(&["Pod", "ConfigMap/web"]));
        let wake = |c: &mut Changes| {
            let mut f = std::pin::pin!(c.changed());
            let w = futures::task::noop_waker();
            f.as_mut()
                .poll(&mut std::task::Context::from_waker(&w))
                .is_ready()
        };
        use std::future::Future;
        assert!(!wake(&mut c), "nothing changed yet");
        tx.send_modify(|t| touch(t, [&obj("ConfigMap", "db"), &obj("Event", "web")], 3));
        assert!(!wake(&mut c), "other topics");
        tx.send_modify(|t| touch(t, [&obj("ConfigMap", "web")], 4));
        assert!(wake(&mut c));
        assert!(!wake(&mut c), "seen once woken");
        assert_eq!(c.revision(), 4);
        tx.send_modify(|t| touch(t, [&obj("Pod", "other")], 5));
        c.mark_seen();
        assert!(!wake(&mut c), "marked seen");
        // Following a topic that moved before counts as a change not seen yet.
        c.follow(follow(&["Pod", "Secret/db"]));
        tx.send_modify(|t| touch(t, [&obj("Secret", "db")], 6));
        assert!(wake(&mut c));
        drop(tx);
        assert!(c.changed().await.is_err(), "the store is gone");
    }
}
