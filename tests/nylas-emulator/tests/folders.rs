//! Folders (Gmail labels) over real HTTP: the seeded set, the listing with paging and `select`,
//! one folder, 404 once deleted, the `folder.*` notifications, the truth, the control API and
//! the seeded folder activity.

use crate::common;

use std::collections::BTreeSet;

use common::{client, eventually, get_json, ids, start, Receiver, DEADLINE};
use nylas_emulator::{Emulator, EmulatorConfig, MessageSpec};
use serde_json::{json, Value};

const SYSTEM: &[&str] = &[
    "INBOX",
    "SENT",
    "DRAFT",
    "TRASH",
    "SPAM",
    "STARRED",
    "IMPORTANT",
    "UNREAD",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
];

fn quiet() -> EmulatorConfig {
    EmulatorConfig {
        initial_messages_per_grant: 20,
        ..EmulatorConfig::default()
    }
}

async fn all_folders(emu: &Emulator, g: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/v3/grants/{g}/folders?limit={limit}");
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={t}"));
        }
        let (status, body) = get_json(emu, &path).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["request_id"].is_string());
        let page = body["data"].as_array().cloned().unwrap_or_default();
        assert!(page.len() <= limit);
        out.extend(page);
        match body["next_cursor"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
    }
    panic!("listing never ended");
}

fn folder_ids(folders: &[Value]) -> BTreeSet<String> {
    folders
        .iter()
        .filter_map(|f| f["id"].as_str().map(str::to_string))
        .collect()
}

/// Every folder id a current message carries names a current folder.
fn messages_refer_to_existing_folders(emu: &Emulator) {
    for g in emu.truth().grants {
        let known = folder_ids(&g.folders);
        for m in &g.messages {
            for f in m["folders"].as_array().into_iter().flatten() {
                let f = f.as_str().unwrap_or_default();
                assert!(known.contains(f), "message folder {f} is not a folder");
            }
        }
    }
}

#[tokio::test]
async fn every_grant_lists_gmail_system_labels_and_user_labels_in_the_spec_shape() {
    let emu = start(EmulatorConfig {
        grants: 2,
        ..quiet()
    })
    .await;
    messages_refer_to_existing_folders(&emu);
    for g in emu.grant_ids() {
        let (status, body) = get_json(&emu, &format!("/v3/grants/{g}/folders")).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["next_cursor"].is_null(),
            "all fit in the default limit"
        );
        let folders = body["data"].as_array().cloned().unwrap_or_default();
        let found = folder_ids(&folders);
        for s in SYSTEM {
            assert!(found.contains(*s), "{s} missing");
        }
        assert!(found.contains("ARCHIVE"));
        for f in &folders {
            assert_eq!(f["object"], "folder");
            assert_eq!(f["grant_id"], g.as_str());
            assert!(f["name"].is_string());
            assert!(f["attributes"].is_array());
            let system = f["system_folder"].as_bool().expect("system_folder");
            assert_eq!(
                system,
                SYSTEM.contains(&f["id"].as_str().unwrap_or("")) || f["id"] == "CHAT"
            );
            if !system {
                assert!(f["background_color"].is_string());
                assert!(f["text_color"].is_string());
            }
            for absent in ["total_count", "unread_count", "parent_id", "child_count"] {
                assert!(f.get(absent).is_none(), "{absent} is not served");
            }
        }
        let sent = folders.iter().find(|f| f["id"] == "SENT").expect("SENT");
        assert_eq!(sent["attributes"], json!(["\\Sent"]));
        assert_eq!(sent["name"], "SENT");
        let truth = emu.truth();
        let gt = truth
            .grants
            .iter()
            .find(|t| t.grant_id == g)
            .expect("grant in truth");
        assert_eq!(gt.folders, folders, "the truth is what the API lists");
        assert!(gt.deleted_folder_ids.is_empty());
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn folders_page_by_cursor_and_select_fields() {
    let emu = start(quiet()).await;
    let g = emu.grant_ids()[0].clone();
    for i in 0..5 {
        assert!(emu.create_folder(&g, &format!("Project {i}")).is_object());
    }
    let whole = all_folders(&emu, &g, 200).await;
    for limit in [1, 4, 7] {
        let paged = all_folders(&emu, &g, limit).await;
        assert_eq!(paged, whole, "limit {limit}");
    }
    // A folder created between pages after the cursor shows up; the earlier ones do not repeat.
    let (_, first) = get_json(&emu, &format!("/v3/grants/{g}/folders?limit=3")).await;
    let token = first["next_cursor"].as_str().expect("more").to_string();
    let late = emu.create_folder(&g, "Zebra");
    let (_, rest) = get_json(
        &emu,
        &format!("/v3/grants/{g}/folders?limit=200&page_token={token}"),
    )
    .await;
    let mut seen = ids(&first);
    seen.extend(ids(&rest));
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no folder twice");
    assert!(seen.contains(&late["id"].as_str().unwrap_or_default().to_string()));

    let (status, body) = get_json(
        &emu,
        &format!("/v3/grants/{g}/folders?select=id,name&limit=2"),
    )
    .await;
    assert_eq!(status, 200);
    for f in body["data"].as_array().into_iter().flatten() {
        let keys: BTreeSet<&str> = f
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, BTreeSet::from(["id", "name"]));
    }
    let (status, body) = get_json(&emu, &format!("/v3/grants/{g}/folders?limit=0")).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = get_json(&emu, &format!("/v3/grants/{g}/folders?page_token=zz")).await;
    assert_eq!(status, 400);
    let (status, body) = get_json(&emu, "/v3/grants/no-such-grant/folders").await;
    assert_eq!(status, 404, "{body}");
    emu.shutdown().await;
}

#[tokio::test]
async fn create_rename_delete_notify_and_a_deleted_folder_answers_404() {
    let emu = start(quiet()).await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();

    let created = emu.create_folder(&g, "Invoices");
    let id = created["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("Label_"), "{id}");
    assert_eq!(created["system_folder"], false);
    assert_eq!(created["object"], "folder");
    assert!(
        emu.create_folder(&g, "invoices").is_null(),
        "names are unique"
    );
    assert!(emu.create_folder(&g, "").is_null());
    assert!(emu.create_folder("no-such-grant", "X").is_null());

    let (status, body) = get_json(&emu, &format!("/v3/grants/{g}/folders/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], created);
    let (_, body) = get_json(&emu, &format!("/v3/grants/{g}/folders/{id}?select=name")).await;
    assert_eq!(body["data"], json!({"name": "Invoices"}));

    let renamed = emu.update_folder(&g, &id, "Invoices 2025");
    assert_eq!(renamed["name"], "Invoices 2025");
    assert_eq!(renamed["id"], id.as_str());
    assert!(emu.update_folder(&g, "INBOX", "Mine").is_null(), "system");
    assert!(emu.update_folder(&g, &id, "Archive").is_null(), "taken");
    assert!(emu.update_folder(&g, "Label_999", "X").is_null());

    // A labelled message loses the label when it goes, notified before the folder.
    let m = emu.create_message(
        &g,
        MessageSpec {
            folders: Some(vec!["INBOX".into(), id.clone()]),
            ..MessageSpec::default()
        },
    );
    let mid = m["id"].as_str().unwrap_or_default().to_string();
    assert!(!emu.delete_folder(&g, "INBOX"), "system folders stay");
    assert!(!emu.delete_folder(&g, "TRASH"));
    assert!(emu.delete_folder(&g, &id));
    assert!(!emu.delete_folder(&g, &id), "already gone");

    let (status, body) = get_json(&emu, &format!("/v3/grants/{g}/folders/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found_error");
    let listed = all_folders(&emu, &g, 200).await;
    assert!(!folder_ids(&listed).contains(&id));
    let (_, msg) = get_json(&emu, &format!("/v3/grants/{g}/messages/{mid}")).await;
    assert_eq!(msg["data"]["folders"], json!(["INBOX"]));

    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let kinds: Vec<String> = rx.received().iter().map(|r| r.kind()).collect();
    assert_eq!(
        kinds,
        [
            "folder.created",
            "folder.updated",
            "message.created",
            "message.updated",
            "folder.deleted"
        ]
    );
    let got = rx.received();
    assert_eq!(got[0].json()["data"]["object"], created);
    assert_eq!(got[1].json()["data"]["object"], renamed);
    assert_eq!(
        got[4].json()["data"]["object"],
        json!({"id": id, "grant_id": g, "object": "folder"}),
        "ids only"
    );
    assert_eq!(got[4].json()["source"], "/google/emails/realtime");

    let truth = emu.truth();
    assert_eq!(truth.grants[0].deleted_folder_ids, vec![id.clone()]);
    assert_eq!(truth.grants[0].folders, listed);
    messages_refer_to_existing_folders(&emu);
    // Ids are never reused.
    let again = emu.create_folder(&g, "Invoices");
    assert_ne!(again["id"], id.as_str());
    emu.shutdown().await;
}

#[tokio::test]
async fn the_control_api_manages_folders_and_serves_them_in_the_truth() {
    let emu = start(quiet()).await;
    let g = emu.grant_ids()[0].clone();
    let base = emu.base_url();
    let http = client();
    let r = http
        .post(format!("{base}/_emulator/grants/{g}/folders"))
        .json(&json!({"name": "Over HTTP"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 200);
    let f: Value = r.json().await.expect("json");
    let id = f["id"].as_str().expect("id").to_string();
    let r = http
        .patch(format!("{base}/_emulator/grants/{g}/folders/{id}"))
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(r.status().as_u16(), 200);
    let r = http
        .post(format!("{base}/_emulator/grants/{g}/folders"))
        .json(&json!({"name": "renamed"}))
        .send()
        .await
        .expect("create taken");
    assert_eq!(r.status().as_u16(), 400, "names are unique");
    let r = http
        .post(format!("{base}/_emulator/grants/no-such-grant/folders"))
        .json(&json!({"name": "Fine"}))
        .send()
        .await
        .expect("create in unknown grant");
    assert_eq!(r.status().as_u16(), 404);
    let r = http
        .patch(format!("{base}/_emulator/grants/{g}/folders/INBOX"))
        .json(&json!({"name": "Renamed inbox"}))
        .send()
        .await
        .expect("rename system");
    assert_eq!(r.status().as_u16(), 404);
    let r = http
        .delete(format!("{base}/_emulator/grants/{g}/folders/SPAM"))
        .send()
        .await
        .expect("delete system");
    assert_eq!(r.status().as_u16(), 404);
    let truth: Value = http
        .get(format!("{base}/_emulator/truth"))
        .send()
        .await
        .expect("truth")
        .json()
        .await
        .expect("json");
    let folders = truth["grants"][0]["folders"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(folders
        .iter()
        .any(|x| x["id"] == id.as_str() && x["name"] == "Renamed"));
    let r = http
        .delete(format!("{base}/_emulator/grants/{g}/folders/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 200);
    let truth: Value = http
        .get(format!("{base}/_emulator/truth"))
        .send()
        .await
        .expect("truth")
        .json()
        .await
        .expect("json");
    assert_eq!(truth["grants"][0]["deleted_folder_ids"], json!([id]));
    let (status, _) = get_json(&emu, &format!("/v3/grants/{g}/folders/{id}")).await;
    assert_eq!(status, 404);
    emu.shutdown().await;
}

fn busy(folder_changes: f64) -> EmulatorConfig {
    EmulatorConfig {
        seed: 7,
        start_time: Some(1_750_032_000),
        events_per_minute: 600.0,
        time_scale: 60.0,
        folder_changes,
        ..quiet()
    }
}

#[tokio::test]
async fn the_activity_changes_user_folders_when_asked_and_the_truth_stays_consistent() {
    let emu = start(busy(1.0)).await;
    emu.pause_activity();
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    emu.resume_activity();
    let g = emu.grant_ids()[0].clone();
    assert!(
        eventually(DEADLINE, || rx.of_kind("folder.deleted").len() >= 2
            && rx.of_kind("folder.updated").len() >= 2)
        .await
    );
    emu.pause_activity();
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    for r in rx.received() {
        let k = r.kind();
        assert!(
            k.starts_with("folder.") || k == "message.updated",
            "only folder changes (and the label removals they cause): {k}"
        );
    }
    let truth = emu.truth();
    let listed = all_folders(&emu, &g, 5).await;
    assert_eq!(truth.grants[0].folders, listed);
    let listed_ids = folder_ids(&listed);
    for s in SYSTEM {
        assert!(listed_ids.contains(*s), "{s} never goes");
    }
    assert!(
        listed_ids.contains("ARCHIVE"),
        "protected from the activity"
    );
    for d in &truth.grants[0].deleted_folder_ids {
        assert!(!listed_ids.contains(d));
        let (status, _) = get_json(&emu, &format!("/v3/grants/{g}/folders/{d}")).await;
        assert_eq!(status, 404);
    }
    let deleted_notified: BTreeSet<String> = rx
        .of_kind("folder.deleted")
        .iter()
        .map(|r| {
            r.json()["data"]["object"]["id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let deleted_truth: BTreeSet<String> =
        truth.grants[0].deleted_folder_ids.iter().cloned().collect();
    assert_eq!(deleted_notified, deleted_truth);
    messages_refer_to_existing_folders(&emu);
    emu.shutdown().await;
}

#[tokio::test]
async fn without_folder_changes_the_activity_never_touches_folders() {
    let emu = start(busy(0.0)).await;
    emu.pause_activity();
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    emu.resume_activity();
    assert!(eventually(DEADLINE, || rx.count() >= 60).await);
    emu.pause_activity();
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert!(rx
        .received()
        .iter()
        .all(|r| !r.kind().starts_with("folder.")));
    let truth = emu.truth();
    assert!(truth.grants[0].deleted_folder_ids.is_empty());
    messages_refer_to_existing_folders(&emu);
    emu.shutdown().await;
}

#[tokio::test]
async fn folder_changes_outside_zero_to_one_are_refused() {
    for bad in [-0.1, 1.5, f64::NAN] {
        let r = Emulator::start(EmulatorConfig {
            folder_changes: bad,
            ..EmulatorConfig::default()
        })
        .await;
        assert!(r.is_err(), "{bad}");
    }
}
