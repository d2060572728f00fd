//! What every Store adapter must do: conditional writes, unique keys, atomic commits,
//! organization scoping and ordered, resumable listings.

use envplane_core::ports::{
    IndexQuery, Kind, ListQuery, Record, RecordKey, Store, StoreError, WriteOp,
};
use futures::FutureExt;
use serde_json::json;

fn record(org_id: &str, id: &str, parent_id: Option<&str>, unique_key: Option<&str>) -> Record {
    Record {
        kind: Kind::Project,
        org_id: org_id.into(),
        id: id.into(),
        parent_id: parent_id.map(str::to_string),
        unique_key: unique_key.map(str::to_string),
        index_key: None,
        expires_at: None,
        version: 1,
        body: json!({ "id": id, "note": "conformance" }),
    }
}

fn query(org_id: &str, parent_id: Option<&str>, after: Option<&str>, limit: usize) -> ListQuery {
    ListQuery {
        kind: Kind::Project,
        org_id: org_id.into(),
        parent_id: parent_id.map(str::to_string),
        after: after.map(str::to_string),
        limit,
        newest_first: false,
    }
}

fn is_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict))
}

pub async fn conformance(store: &dyn Store) {
    inserts_never_overwrite(store).await;
    replaces_are_conditional(store).await;
    deletes_are_conditional(store).await;
    commits_are_all_or_nothing(store).await;
    checks_fence_a_commit(store).await;
    organizations_are_isolated(store).await;
    listings_are_ordered_and_resumable(store).await;
    the_index_spans_organizations(store).await;
    many_records_are_read_at_once_in_the_order_asked(store).await;
    the_index_counts_up_to_a_limit(store).await;
    the_index_is_read_up_to_a_bound(store).await;
    expiring_records_keep_their_ids_until_forgotten(store).await;
}

/// An expiring record is a record like any other until the store forgets it: its id
/// stays taken (what makes it a once-only marker) and its expiry reads back.
async fn expiring_records_keep_their_ids_until_forgotten(store: &dyn Store) {
    let in_a_week = chrono::Utc::now().timestamp() + 7 * 24 * 3600;
    let expiring = Record {
        kind: Kind::WebhookDelivery,
        expires_at: Some(in_a_week),
        ..record("org_e", "delivery-1", None, None)
    };
    store
        .commit(vec![WriteOp::Insert(expiring.clone())])
        .await
        .unwrap();
    assert!(is_conflict(
        store.commit(vec![WriteOp::Insert(expiring.clone())]).await
    ));
    let stored = store
        .get(Kind::WebhookDelivery, "org_e", "delivery-1")
        .await
        .unwrap()
        .expect("the expiring record");
    assert_eq!(stored.expires_at, Some(in_a_week));
    let lasting = store.get(Kind::Project, "org_a", "p_1").await.unwrap();
    assert!(lasting.is_none_or(|record| record.expires_at.is_none()));
}

async fn the_index_counts_up_to_a_limit(store: &dyn Store) {
    let mut inserts = Vec::new();
    for (org_id, id) in [("org_c", "c_1"), ("org_d", "c_2"), ("org_c", "c_3")] {
        let mut indexed = record(org_id, id, None, None);
        indexed.index_key = Some("counted".into());
        inserts.push(WriteOp::Insert(indexed));
    }
    let mut other = record("org_c", "c_4", None, None);
    other.index_key = Some("other".into());
    inserts.push(WriteOp::Insert(other));
    store.commit(inserts).await.unwrap();
    let count = |limit| store.count_indexed(Kind::Project, "counted", limit);
    assert_eq!(count(10).await.unwrap(), 3);
    assert_eq!(count(2).await.unwrap(), 2);
    assert_eq!(
        store
            .count_indexed(Kind::Template, "counted", 10)
            .await
            .unwrap(),
        0
    );
}

async fn many_records_are_read_at_once_in_the_order_asked(store: &dyn Store) {
    let (first, second) = (
        record("org_m", "m_1", None, None),
        record("org_m", "m_2", None, None),
    );
    let other_org = record("org_n", "m_1", None, None);
    store
        .commit(vec![
            WriteOp::Insert(first.clone()),
            WriteOp::Insert(second.clone()),
            WriteOp::Insert(other_org.clone()),
        ])
        .await
        .unwrap();
    let key = |org_id, id| RecordKey {
        kind: Kind::Project,
        org_id,
        id,
    };
    let wrong_kind = RecordKey {
        kind: Kind::Template,
        ..key("org_m", "m_1")
    };
    let keys = [
        key("org_m", "m_2"),
        key("org_m", "missing"),
        wrong_kind,
        key("org_n", "m_1"),
        key("org_m", "m_1"),
        key("org_m", "m_2"),
    ];
    let found = store.get_many(&keys).await.unwrap();
    assert_eq!(
        found,
        [
            Some(second.clone()),
            None,
            None,
            Some(other_org),
            Some(first),
            Some(second)
        ]
    );
    assert!(store.get_many(&[]).await.unwrap().is_empty());
}

async fn inserts_never_overwrite(store: &dyn Store) {
    let first = record("org_i", "i_1", None, Some("org_i/alpha"));
    store
        .commit(vec![WriteOp::Insert(first.clone())])
        .await
        .unwrap();
    let stored = store
        .get(Kind::Project, "org_i", "i_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, first);

    let same_id = record("org_i", "i_1", None, Some("org_i/other"));
    assert!(is_conflict(
        store.commit(vec![WriteOp::Insert(same_id)]).await
    ));
    let same_key = record("org_i", "i_2", None, Some("org_i/alpha"));
    assert!(is_conflict(
        store.commit(vec![WriteOp::Insert(same_key)]).await
    ));
    assert!(store
        .get(Kind::Project, "org_i", "i_2")
        .await
        .unwrap()
        .is_none());

    let found = store
        .find_unique(Kind::Project, "org_i/alpha")
        .await
        .unwrap();
    assert_eq!(found.map(|r| r.id), Some("i_1".to_string()));
    assert!(store
        .find_unique(Kind::Template, "org_i/alpha")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get(Kind::Template, "org_i", "i_1")
        .await
        .unwrap()
        .is_none());
}

async fn replaces_are_conditional(store: &dyn Store) {
    store
        .commit(vec![WriteOp::Insert(record(
            "org_r",
            "r_1",
            None,
            Some("org_r/old"),
        ))])
        .await
        .unwrap();
    let mut changed = record("org_r", "r_1", None, Some("org_r/new"));
    changed.body = json!({ "changed": true });
    let replace = |expected_version| WriteOp::Replace {
        record: changed.clone(),
        expected_version,
    };
    assert!(is_conflict(store.commit(vec![replace(2)]).await));
    store.commit(vec![replace(1)]).await.unwrap();
    assert!(
        is_conflict(store.commit(vec![replace(1)]).await),
        "stale version accepted"
    );

    let stored = store
        .get(Kind::Project, "org_r", "r_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.body, json!({ "changed": true }));
    assert!(store
        .find_unique(Kind::Project, "org_r/old")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .find_unique(Kind::Project, "org_r/new")
        .await
        .unwrap()
        .is_some());

    let missing = WriteOp::Replace {
        record: record("org_r", "r_missing", None, None),
        expected_version: 1,
    };
    assert!(is_conflict(store.commit(vec![missing]).await));
}

async fn deletes_are_conditional(store: &dyn Store) {
    store
        .commit(vec![WriteOp::Insert(record(
            "org_d",
            "d_1",
            None,
            Some("org_d/x"),
        ))])
        .await
        .unwrap();
    let delete = |expected_version| WriteOp::Delete {
        kind: Kind::Project,
        org_id: "org_d".into(),
        id: "d_1".into(),
        expected_version,
    };
    assert!(is_conflict(store.commit(vec![delete(7)]).await));
    store.commit(vec![delete(1)]).await.unwrap();
    assert!(store
        .get(Kind::Project, "org_d", "d_1")
        .await
        .unwrap()
        .is_none());
    assert!(is_conflict(store.commit(vec![delete(1)]).await));
    // The unique key is free again.
    store
        .commit(vec![WriteOp::Insert(record(
            "org_d",
            "d_2",
            None,
            Some("org_d/x"),
        ))])
        .await
        .unwrap();
}

async fn commits_are_all_or_nothing(store: &dyn Store) {
    store
        .commit(vec![WriteOp::Insert(record("org_t", "t_1", None, None))])
        .await
        .unwrap();
    let batch = vec![
        WriteOp::Insert(record("org_t", "t_2", None, None)),
        WriteOp::Insert(record("org_t", "t_1", None, None)),
    ];
    assert!(is_conflict(store.commit(batch).await));
    assert!(
        store
            .get(Kind::Project, "org_t", "t_2")
            .await
            .unwrap()
            .is_none(),
        "half of a failed commit was applied"
    );
}

/// A commit checked against a record goes through only while that record is at the
/// version it expects (0: absent), and fails whole with `CheckFailed` otherwise.
async fn checks_fence_a_commit(store: &dyn Store) {
    let check = |expected_version| WriteOp::Check {
        kind: Kind::Template,
        org_id: "org_f".into(),
        id: "fence".into(),
        expected_version,
    };
    let fenced = |id: &str, expected_version| {
        vec![
            WriteOp::Insert(record("org_f", id, None, None)),
            check(expected_version),
        ]
    };
    store.commit(fenced("f_1", 0)).await.unwrap();
    assert!(matches!(
        store.commit(fenced("f_2", 1)).await,
        Err(StoreError::CheckFailed)
    ));
    let mut fence = record("org_f", "fence", None, None);
    fence.kind = Kind::Template;
    store.commit(vec![WriteOp::Insert(fence)]).await.unwrap();
    assert!(matches!(
        store.commit(fenced("f_3", 0)).await,
        Err(StoreError::CheckFailed)
    ));
    assert!(
        store
            .get(Kind::Project, "org_f", "f_3")
            .await
            .unwrap()
            .is_none(),
        "a commit whose check failed was applied"
    );
    store.commit(fenced("f_4", 1)).await.unwrap();
    store.commit(vec![check(1)]).await.unwrap();
    assert!(matches!(
        store.commit(vec![check(2)]).await,
        Err(StoreError::CheckFailed)
    ));
}

async fn organizations_are_isolated(store: &dyn Store) {
    store
        .commit(vec![WriteOp::Insert(record(
            "org_x",
            "x_1",
            Some("p"),
            None,
        ))])
        .await
        .unwrap();
    assert!(store
        .get(Kind::Project, "org_y", "x_1")
        .await
        .unwrap()
        .is_none());
    let listed = store.list(query("org_y", None, None, 10)).await.unwrap();
    assert!(listed.items.is_empty());
    let listed = store
        .list(query("org_y", Some("p"), None, 10))
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    // The same id may exist in two organizations without touching each other.
    store
        .commit(vec![WriteOp::Insert(record("org_y", "x_1", None, None))])
        .await
        .unwrap();
    let mine = store
        .get(Kind::Project, "org_x", "x_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mine.parent_id.as_deref(), Some("p"));
}

async fn listings_are_ordered_and_resumable(store: &dyn Store) {
    let ops = (0..7)
        .rev()
        .map(|n| {
            let parent = if n % 2 == 0 { "even" } else { "odd" };
            WriteOp::Insert(record("org_l", &format!("l_{n}"), Some(parent), None))
        })
        .collect();
    store.commit(ops).await.unwrap();

    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(query("org_l", None, after.as_deref(), 3))
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        ids.extend(page.items.into_iter().map(|r| r.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(ids, ["l_0", "l_1", "l_2", "l_3", "l_4", "l_5", "l_6"]);

    let exact = store.list(query("org_l", None, None, 7)).await.unwrap();
    assert_eq!(exact.items.len(), 7);
    assert!(
        exact.next.is_none(),
        "a full last page must not promise more"
    );

    let even = store
        .list(query("org_l", Some("even"), None, 10))
        .await
        .unwrap();
    let even: Vec<_> = even.items.into_iter().map(|r| r.id).collect();
    assert_eq!(even, ["l_0", "l_2", "l_4", "l_6"]);

    let mut newest = query("org_l", Some("odd"), None, 2);
    newest.newest_first = true;
    let page = store.list(newest.clone()).await.unwrap();
    let first: Vec<_> = page.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(first, ["l_5", "l_3"]);
    newest.after = page.next;
    let rest = store.list(newest).await.unwrap();
    assert_eq!(
        rest.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["l_1"]
    );
    assert!(rest.next.is_none());
}

async fn the_index_spans_organizations(store: &dyn Store) {
    let indexed = |org_id: &str, id: &str, index_key: Option<&str>| Record {
        kind: Kind::Deployment,
        index_key: index_key.map(str::to_string),
        ..record(org_id, id, None, None)
    };
    store
        .commit(vec![
            WriteOp::Insert(indexed("org_a", "n_1", Some("running"))),
            WriteOp::Insert(indexed("org_b", "n_2", Some("running"))),
            WriteOp::Insert(indexed("org_a", "n_3", Some("queued"))),
            WriteOp::Insert(indexed("org_b", "n_4", None)),
        ])
        .await
        .unwrap();
    let query = |after: Option<&str>| IndexQuery {
        kind: Kind::Deployment,
        index_key: "running".into(),
        after: after.map(str::to_string),
        until: None,
        limit: 1,
    };
    let first = store.list_indexed(query(None)).await.unwrap();
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].id, "n_1");
    assert_eq!(first.items[0].index_key.as_deref(), Some("running"));
    let second = store
        .list_indexed(query(first.next.as_deref()))
        .await
        .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|r| (r.org_id.as_str(), r.id.as_str()))
            .collect::<Vec<_>>(),
        [("org_b", "n_2")]
    );
    assert!(second.next.is_none());

    // Leaving the index: a replace without an index key drops the record from it.
    let mut finished = indexed("org_a", "n_1", None);
    finished.version = 2;
    store
        .commit(vec![WriteOp::Replace {
            record: finished,
            expected_version: 1,
        }])
        .await
        .unwrap();
    let mut all = query(None);
    all.limit = 10;
    let ids: Vec<_> = store
        .list_indexed(all)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["n_2"]);
}

/// An index read with `until` ends at that id (inclusive), also when it resumes after
/// a page, so a time line is read up to now and no further.
async fn the_index_is_read_up_to_a_bound(store: &dyn Store) {
    let ids = ["0100.a", "0200.b", "0200.c", "0300.d", "0400.e"];
    let ops = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            WriteOp::Insert(Record {
                kind: Kind::DueJob,
                index_key: Some("due".into()),
                ..record(&format!("org_{n}"), id, None, None)
            })
        })
        .collect();
    store.commit(ops).await.unwrap();
    let read = |after: Option<&str>, until: &str, limit: usize| {
        let query = IndexQuery {
            kind: Kind::DueJob,
            index_key: "due".into(),
            after: after.map(str::to_string),
            until: Some(until.to_string()),
            limit,
        };
        async move {
            let page = store.list_indexed(query).await.unwrap();
            let ids: Vec<String> = page.items.into_iter().map(|r| r.id).collect();
            (ids, page.next)
        }
    };
    assert_eq!(
        read(None, "0300.~", 10).await,
        (ids[..4].iter().map(|s| s.to_string()).collect(), None)
    );
    let (first, next) = read(None, "0300.~", 2).await;
    assert_eq!(first, ["0100.a", "0200.b"]);
    let (rest, last) = read(next.as_deref(), "0300.~", 2).await;
    assert_eq!(
        (rest, last),
        (vec!["0200.c".to_string(), "0300.d".to_string()], None)
    );
    assert_eq!(read(Some("0300.d"), "0300.~", 2).await, (vec![], None));
    assert_eq!(read(None, "0050.~", 2).await, (vec![], None));
}

/// Writes records that `check_sample` expects to find, for persistence tests.
pub async fn write_sample(store: &dyn Store) {
    store
        .commit(vec![WriteOp::Insert(record(
            "org_s",
            "s_1",
            Some("p"),
            Some("org_s/s"),
        ))])
        .await
        .unwrap();
}

pub async fn check_sample(store: &dyn Store) {
    let stored = store.get(Kind::Project, "org_s", "s_1").await.unwrap();
    assert_eq!(
        stored,
        Some(record("org_s", "s_1", Some("p"), Some("org_s/s")))
    );
}

/// Callers that go away mid-call (a client hung up, a request timed out) cost the store
/// nothing: after hundreds of reads and writes abandoned in flight, every kind of call
/// still works, at full concurrency.
pub async fn survives_abandoned_calls(store: std::sync::Arc<dyn Store>) {
    store
        .commit(vec![WriteOp::Insert(record(
            "org_a",
            "kept",
            None,
            Some("org_a/kept"),
        ))])
        .await
        .unwrap();
    for n in 0..600 {
        let insert = WriteOp::Insert(record("org_a", &format!("w_{n}"), None, None));
        // Polled once, so the call is under way, then dropped: its caller went away.
        let _ = match n % 4 {
            0 => store
                .get(Kind::Project, "org_a", "kept")
                .map(drop)
                .now_or_never(),
            1 => store
                .find_unique(Kind::Project, "org_a/kept")
                .map(drop)
                .now_or_never(),
            2 => store
                .list(query("org_a", None, None, 50))
                .map(drop)
                .now_or_never(),
            _ => store.commit(vec![insert]).map(drop).now_or_never(),
        };
    }
    let calls = (0..64).map(|_| async {
        assert!(store
            .get(Kind::Project, "org_a", "kept")
            .await
            .unwrap()
            .is_some());
        assert!(store
            .find_unique(Kind::Project, "org_a/kept")
            .await
            .unwrap()
            .is_some());
        assert!(!store
            .list(query("org_a", None, None, 10))
            .await
            .unwrap()
            .items
            .is_empty());
    });
    futures::future::join_all(calls).await;
    store
        .commit(vec![WriteOp::Insert(record("org_a", "after", None, None))])
        .await
        .expect("the store still writes after abandoned calls");
}
