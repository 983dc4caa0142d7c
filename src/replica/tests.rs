//! The replica core's rules, each against the attack it stops. Records here are unsigned: the
//! core takes records whose signatures its driver has already checked.

use super::*;
use crate::records::{Removal, Role};

fn version(uploader: &str, created: u64, hash: u8) -> FileMeta {
    FileMeta {
        name: "f".into(),
        key: Id::hash(b"f"),
        size: 10,
        hash: [hash; 32],
        role: Role::Replica,
        uploader: uploader.into(),
        created,
        signature: Vec::new(),
    }
}

fn stone(uploader: &str, at: u64, of: FileMeta) -> Tombstone {
    Tombstone {
        removal: Removal {
            name: "f".into(),
            at,
            uploader: uploader.into(),
            signature: Vec::new(),
        },
        removed: of,
    }
}

fn offer<'a>(uploader: &'a str, created: u64, hash: Option<&'a Hash>, direct: bool) -> Offer<'a> {
    Offer {
        uploader,
        created,
        hash,
        direct,
    }
}

const NOW: u64 = 1_000_000;

#[test]
fn a_copy_is_taken_only_from_its_own_uploader_and_never_backwards() {
    let held = version("alice", 500, 1);
    // Another uploader's file under the same name: refused, whoever passes it on.
    assert!(matches!(
        admit(offer("mallory", 900, None, true), Some(&held), None, NOW),
        Admit::Refuse(_)
    ));
    // The same version: nothing to move.
    assert_eq!(
        admit(
            offer("alice", 500, Some(&[1; 32]), false),
            Some(&held),
            None,
            NOW
        ),
        Admit::Identical
    );
    // An older copy passed on by a member: refused (no rollback); a newer one taken.
    assert!(matches!(
        admit(
            offer("alice", 400, Some(&[2; 32]), false),
            Some(&held),
            None,
            NOW
        ),
        Admit::Refuse(_)
    ));
    assert_eq!(
        admit(
            offer("alice", 600, Some(&[2; 32]), false),
            Some(&held),
            None,
            NOW
        ),
        Admit::Accept
    );
    // A version dated a year ahead: refused, so it cannot pin the name.
    assert!(matches!(
        admit(offer("alice", NOW + 365 * 86_400_000, None, true), None, None, NOW),
        Admit::Refuse(why) if why.contains("ahead")
    ));
}

#[test]
fn a_removal_blocks_only_its_own_uploaders_older_copies() {
    let removed = stone("alice", 700, version("alice", 500, 1));
    // A member passing on the removed version (or older) is told it was removed.
    assert!(matches!(
        admit(
            offer("alice", 500, Some(&[1; 32]), false),
            None,
            Some(&removed),
            NOW
        ),
        Admit::Removed(_)
    ));
    // A version made after the removal lives; so does another uploader's, and the uploader's
    // own direct put whatever its clock says.
    assert_eq!(
        admit(
            offer("alice", 800, Some(&[3; 32]), false),
            None,
            Some(&removed),
            NOW
        ),
        Admit::Accept
    );
    assert_eq!(
        admit(offer("bob", 600, None, true), None, Some(&removed), NOW),
        Admit::Accept
    );
    assert_eq!(
        admit(offer("alice", 600, None, true), None, Some(&removed), NOW),
        Admit::Accept
    );
}

#[test]
fn a_get_follows_the_majority_uploader_and_its_newest_version() {
    let v1 = version("alice", 500, 1);
    let v2 = version("alice", 600, 2);
    let fake = version("mallory", 900, 9);
    // A hostile owner (answer 0) offers its own signed file: two honest holders outvote it.
    let answers = [
        Said::Holds(fake.clone()),
        Said::Holds(v2.clone()),
        Said::Holds(v2.clone()),
    ];
    assert_eq!(
        choose(&answers),
        Choice::Fetch {
            version: v2.clone(),
            sources: vec![1, 2]
        }
    );
    // A holder serving an older version is never a source once a newer one is known.
    let answers = [
        Said::Holds(v1.clone()),
        Said::Holds(v2.clone()),
        Said::Nothing,
    ];
    assert_eq!(
        choose(&answers),
        Choice::Fetch {
            version: v2.clone(),
            sources: vec![1]
        }
    );
    // A removal newer than every version: gone. An older removal: the newer version lives.
    let answers = [
        Said::Holds(v2.clone()),
        Said::Removed(stone("alice", 650, v2.clone())),
    ];
    assert_eq!(choose(&answers), Choice::Removed);
    let answers = [
        Said::Removed(stone("alice", 550, v1.clone())),
        Said::Holds(v2.clone()),
    ];
    assert!(matches!(choose(&answers), Choice::Fetch { sources, .. } if sources == vec![1]));
    // Another uploader's removal (it came with its own version) does not touch alice's file.
    let answers = [
        Said::Holds(v2.clone()),
        Said::Holds(v2.clone()),
        Said::Removed(stone("mallory", u64::MAX, fake)),
    ];
    assert!(matches!(choose(&answers), Choice::Fetch { .. }));
    assert_eq!(choose(&[Said::Nothing, Said::Nothing]), Choice::NotFound);
    // A tie goes to the first answer (the owner's).
    let answers = [Said::Holds(v1.clone()), Said::Holds(version("bob", 1, 5))];
    assert!(matches!(choose(&answers), Choice::Fetch { version, .. } if version == v1));
}

#[test]
fn a_surplus_copy_goes_only_when_every_holder_proved_it_holds_the_file() {
    let mine = version("alice", 500, 1);
    let newer = version("alice", 600, 2);
    let older = version("alice", 400, 3);
    let theirs = version("mallory", 900, 1);
    assert_eq!(shown(&mine, Some(&mine), true, true), Shown::Proved);
    // Claiming the version without the bytes to prove it is not holding it.
    assert_eq!(shown(&mine, Some(&mine), false, true), Shown::Not);
    assert_eq!(shown(&mine, Some(&newer), false, true), Shown::Newer);
    assert_eq!(shown(&mine, Some(&older), true, true), Shown::Not);
    assert_eq!(shown(&mine, Some(&theirs), true, true), Shown::Not);
    assert_eq!(shown(&mine, None, true, true), Shown::Not);
    // A holder whose own copy is surplus (nobody confirmed it, it does not own the key)
    // cannot vouch, bytes or not.
    assert_eq!(shown(&mine, Some(&mine), true, false), Shown::Not);
    assert!(keeps(true, false) && keeps(false, true) && !keeps(false, false));
    let r = 3;
    assert!(may_drop_surplus(
        &[Shown::Proved, Shown::Newer, Shown::Proved],
        r
    ));
    // One liar (or one dead node) among the holders keeps the copy.
    assert!(!may_drop_surplus(
        &[Shown::Proved, Shown::Not, Shown::Proved],
        r
    ));
    // Fewer holders than R known: keep.
    assert!(!may_drop_surplus(&[Shown::Proved, Shown::Proved], r));
    assert!(!may_drop_surplus(&[], 0));
}

#[test]
fn challenges_cover_the_file_and_bind_the_version() {
    let key = Id::hash(b"f");
    for size in [0u64, 1, 1000, PROOF_BYTES, PROOF_BYTES + 1, 1 << 30] {
        for n in 0..50u8 {
            let (offset, len) = proof_range(&[n; 32], &key, size);
            assert!(offset + len <= size, "{size}: {offset}+{len}");
            assert_eq!(len, PROOF_BYTES.min(size), "{size}");
        }
    }
    // Different nonces pick different places in a large file.
    let a = proof_range(&[1; 32], &key, 1 << 30).0;
    let b = proof_range(&[2; 32], &key, 1 << 30).0;
    assert_ne!(a, b);
    assert_ne!(
        proof(&[1; 32], &[0; 32], b"x"),
        proof(&[1; 32], &[1; 32], b"x")
    );
    assert_ne!(
        proof(&[1; 32], &[0; 32], b"x"),
        proof(&[2; 32], &[0; 32], b"x")
    );
}

#[test]
fn the_responsible_nodes_are_the_owner_and_its_next_successors() {
    let ids: Vec<Id> = (1u8..6).map(|i| Id::hash(&[i])).collect();
    let got = responsible(ids[0], &[ids[1], ids[1], ids[2], ids[3]], 3, |i| *i);
    assert_eq!(got, vec![ids[0], ids[1], ids[2]]);
    assert_eq!(responsible(ids[0], &[], 3, |i| *i), vec![ids[0]]);
    assert!(owns(&ids[0], &ids[0], None, true));
    assert!(!owns(&ids[0], &ids[1], None, false));
}

#[test]
fn a_round_promotes_hands_off_replicates_and_settles_by_the_ring_view() {
    use super::plan::*;
    let ids: Vec<Id> = (0u8..4).map(|i| Id([i * 60; 20])).collect();
    // This node is ids[2]; its predecessor ids[1]: it owns (ids[1], ids[2]].
    let place = Place {
        me: ids[2],
        predecessor: Some(ids[1]),
        alone: false,
    };
    let at = |b: u8, role| FileMeta {
        key: Id([b; 20]),
        role,
        ..version("alice", 1, 1)
    };
    let mine_as_replica = at(100, Role::Replica);
    let mine_owned = at(110, Role::Owner);
    let theirs_owned = at(10, Role::Owner);
    let theirs_unconfirmed = at(20, Role::Replica);
    let theirs_confirmed = at(30, Role::Replica);
    let corrupt_owned = at(115, Role::Owner);
    let copy = |meta: &FileMeta, unconfirmed, corrupt| Copy {
        key: meta.key,
        role: meta.role,
        unconfirmed,
        corrupt,
    };
    let plan = plan_round(
        place,
        [
            copy(&theirs_owned, false, false),
            copy(&theirs_unconfirmed, true, false),
            copy(&theirs_confirmed, false, false),
            copy(&mine_as_replica, true, false),
            copy(&mine_owned, false, false),
            copy(&corrupt_owned, false, true),
        ],
        64,
    );
    assert_eq!(plan.promote, vec![mine_as_replica.key]);
    assert_eq!(plan.hand_off, vec![theirs_owned.key]);
    assert_eq!(plan.replicate, vec![mine_as_replica.key, mine_owned.key]);
    assert_eq!(plan.settle, vec![theirs_unconfirmed.key]);
    // Without a predecessor nothing is handed off: the node does not know where keys go.
    let lost = Place {
        predecessor: None,
        ..place
    };
    assert!(plan_round(lost, [copy(&theirs_owned, false, false)], 64)
        .hand_off
        .is_empty());
}

#[test]
fn settling_asks_the_owner_or_challenges_everyone_and_only_proofs_drop() {
    use super::plan::*;
    let n = |i: u8| Id([i; 20]);
    assert_eq!(settle(n(1), n(1), &[n(2)], 3, |p| *p), Settle::BecomeOwner);
    assert_eq!(
        settle(n(3), n(1), &[n(2), n(3), n(4)], 3, |p| *p),
        Settle::Holder {
            owner: n(1),
            others: vec![n(2)]
        }
    );
    assert_eq!(
        settle(n(4), n(1), &[n(2), n(3), n(4)], 3, |p| *p),
        Settle::Challenge {
            owner: n(1),
            responsible: vec![n(1), n(2), n(3)]
        }
    );
    let mine = version("alice", 500, 1);
    let removed = stone("alice", 600, mine.clone());
    assert_eq!(
        after_owner_stat(&mine, &Said::Removed(removed.clone())),
        OwnerCheck::Apply(Box::new(removed))
    );
    // Another uploader's removal, an older version, nothing: the owner gets the copy.
    let foreign = stone("mallory", u64::MAX, version("mallory", 1, 9));
    assert_eq!(
        after_owner_stat(&mine, &Said::Removed(foreign)),
        OwnerCheck::PushToOwner
    );
    assert_eq!(
        after_owner_stat(&mine, &Said::Holds(version("alice", 400, 2))),
        OwnerCheck::PushToOwner
    );
    assert_eq!(
        after_owner_stat(&mine, &Said::Holds(mine.clone())),
        OwnerCheck::Fine
    );
    let all = [n(1), n(2), n(3)];
    assert_eq!(
        after_challenge(&all, &[Shown::Proved; 3], n(1), 3, true, |p| *p),
        Surplus::Drop
    );
    // A holder never drops its own copy; it only gives copies to those that lack one.
    assert_eq!(
        after_challenge(&all, &[Shown::Proved; 3], n(1), 3, false, |p| *p),
        Surplus::Restore(vec![])
    );
    assert_eq!(
        after_challenge(
            &all,
            &[Shown::Not, Shown::Proved, Shown::Not],
            n(1),
            3,
            true,
            |p| *p
        ),
        Surplus::Restore(vec![(n(1), Role::Owner), (n(3), Role::Replica)])
    );
    // An inventory answer: proofs of removal of what was sent, and pushes of what is missing.
    let mut other = version("alice", 1, 3);
    other.key = Id([9; 20]);
    let steps = after_inventory(
        &[mine.held(), other.held()],
        &[other.key],
        vec![
            stone("alice", 600, mine.clone()),
            stone("bob", 600, version("bob", 1, 1)),
        ],
    );
    assert_eq!(
        steps,
        vec![
            InventoryStep::Apply(Box::new(stone("alice", 600, mine.clone()))),
            InventoryStep::Push(other.key)
        ]
    );
}

#[test]
fn a_leave_places_each_copy_where_it_is_lacking() {
    use super::plan::hand_over;
    let owned = FileMeta {
        key: Id([1; 20]),
        role: Role::Owner,
        ..version("alice", 1, 1)
    };
    let replica = FileMeta {
        key: Id([2; 20]),
        ..version("alice", 1, 2)
    };
    let everywhere = FileMeta {
        key: Id([3; 20]),
        ..version("alice", 1, 3)
    };
    let held = [owned.held(), replica.held(), everywhere.held()];
    // The first successor lacks the replica only; the second lacks the owned file.
    let lacks = vec![Some(vec![replica.key]), Some(vec![owned.key]), Some(vec![])];
    assert_eq!(
        hand_over(&held, &lacks),
        vec![
            // The successor takes over ownership, and a new copy goes where it was lacking.
            (0, owned.key, Role::Owner),
            (1, owned.key, Role::Replica),
            (0, replica.key, Role::Replica),
            // Everyone claims this one: the first successor gets it anyway (a liar may claim).
            (0, everywhere.key, Role::Replica),
        ]
    );
    // Nobody answered: the first successor gets everything, as before.
    let silent = vec![None, None];
    assert_eq!(
        hand_over(&held, &silent),
        vec![
            (0, owned.key, Role::Owner),
            (0, replica.key, Role::Replica),
            (0, everywhere.key, Role::Replica),
        ]
    );
}
