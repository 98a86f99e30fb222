//! RFC 9162 Merkle proofs, cross-checked against a naive recursive implementation written
//! straight from the RFC's definitions, for every size up to 300 and random larger ones, and
//! attacked by flipping every bit of every proof element.

use jifen_ledger::hash::Hash;
use jifen_ledger::merkle::{
    empty_root, leaf_hash, node_hash, subtree_root, verify_consistency, verify_inclusion, Nodes, ProofError, Tree, FORGETTABLE_LEVELS,
};
use proptest::prelude::*;

fn record_hashes(n: u64) -> Vec<Hash> {
    (0..n).map(|i| Hash::of(&i.to_be_bytes())).collect()
}

/// MTH(D[n]) as RFC 9162 §2.1.1 defines it, over leaf hashes.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_pow2_below(n);
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

fn largest_pow2_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// PATH(m, D[n]), RFC 9162 §2.1.3.1.
fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = largest_pow2_below(n);
    if m < k {
        let mut p = naive_path(m, &leaves[..k]);
        p.push(naive_root(&leaves[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &leaves[k..]);
        p.push(naive_root(&leaves[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b), RFC 9162 §2.1.4.1.
fn naive_subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { vec![] } else { vec![naive_root(leaves)] };
    }
    let k = largest_pow2_below(n);
    if m <= k {
        let mut p = naive_subproof(m, &leaves[..k], b);
        p.push(naive_root(&leaves[k..]));
        p
    } else {
        let mut p = naive_subproof(m - k, &leaves[k..], false);
        p.push(naive_root(&leaves[..k]));
        p
    }
}

fn check_size(n: u64, tree: &Tree, leaves: &[Hash]) {
    let root = tree.root(n).unwrap();
    assert_eq!(root, naive_root(&leaves[..n as usize]), "root of {n}");
    for m in 0..n {
        let proof = tree.inclusion_proof(m, n).unwrap();
        assert_eq!(proof, naive_path(m as usize, &leaves[..n as usize]), "path {m} of {n}");
        verify_inclusion(&leaves[m as usize], m, n, &proof, &root).unwrap();
    }
    for m in 1..=n {
        let proof = tree.consistency_proof(m, n).unwrap();
        assert_eq!(proof, naive_subproof(m as usize, &leaves[..n as usize], true), "consistency {m} -> {n}");
        verify_consistency(m, n, &tree.root(m).unwrap(), &root, &proof).unwrap();
    }
}

#[test]
fn every_size_up_to_300_matches_the_rfc_definitions() {
    let hashes = record_hashes(300);
    let tree = Tree::from_record_hashes(&hashes);
    let leaves: Vec<Hash> = hashes.iter().map(leaf_hash).collect();
    for n in 0..=300 {
        check_size(n, &tree, &leaves);
    }
}

#[test]
fn rfc_6962_reference_roots() {
    // The empty tree, and the root over the single leaf "" from RFC 6962's test data
    // (Certificate Transparency's merkle_tree_test: leaf hash of the empty string).
    assert_eq!(empty_root().to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    let mut t = Tree::new();
    t.push_leaf(Hash::tagged(&[], &[]));
    // SHA-256(0x00) is the leaf hash of empty data.
    assert_eq!(Hash::tagged(&[], &[]).to_hex(), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    assert_eq!(t.root(1).unwrap().to_hex(), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
}

#[test]
fn flipping_any_bit_of_any_proof_element_is_rejected() {
    let hashes = record_hashes(77);
    let tree = Tree::from_record_hashes(&hashes);
    let n = 77;
    let root = tree.root(n).unwrap();
    for m in [0u64, 1, 31, 32, 63, 64, 76] {
        let leaf = tree.leaf(m).unwrap();
        let proof = tree.inclusion_proof(m, n).unwrap();
        for i in 0..proof.len() {
            for bit in 0..256 {
                let mut bad = proof.clone();
                bad[i].0[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(verify_inclusion(&leaf, m, n, &bad, &root), Err(ProofError::RootMismatch));
            }
        }
        // Truncated, extended, wrong index. (A wrong size with the same proof shape cannot be
        // told apart from the proof alone: the root binds the size.)
        assert!(verify_inclusion(&leaf, m, n, &proof[..proof.len() - 1], &root).is_err());
        let mut longer = proof.clone();
        longer.push(root);
        assert!(verify_inclusion(&leaf, m, n, &longer, &root).is_err());
        assert!(verify_inclusion(&leaf, (m + 1) % n, n, &proof, &root).is_err());
    }
    for old in [1u64, 2, 7, 32, 50, 76] {
        let old_root = tree.root(old).unwrap();
        let proof = tree.consistency_proof(old, n).unwrap();
        for i in 0..proof.len() {
            for bit in 0..256 {
                let mut bad = proof.clone();
                bad[i].0[bit / 8] ^= 1 << (bit % 8);
                assert!(verify_consistency(old, n, &old_root, &root, &bad).is_err(), "old {old} elem {i} bit {bit}");
            }
        }
        if !proof.is_empty() {
            assert!(verify_consistency(old, n, &old_root, &root, &proof[1..]).is_err());
        }
        let mut wrong_old = old_root;
        wrong_old.0[0] ^= 1;
        assert!(verify_consistency(old, n, &wrong_old, &root, &proof).is_err());
    }
    // Reordered proofs fail too.
    let proof = tree.inclusion_proof(5, n).unwrap();
    let mut swapped = proof.clone();
    swapped.swap(0, 1);
    assert!(verify_inclusion(&tree.leaf(5).unwrap(), 5, n, &swapped, &root).is_err());
}

#[test]
fn out_of_range_requests_are_errors() {
    let tree = Tree::from_record_hashes(&record_hashes(10));
    assert_eq!(tree.inclusion_proof(10, 10), Err(ProofError::IndexOutOfRange { index: 10, size: 10 }));
    assert_eq!(tree.inclusion_proof(0, 11), Err(ProofError::SizeOutOfRange { size: 11, len: 10 }));
    assert_eq!(tree.consistency_proof(0, 5), Err(ProofError::BadSizes { old: 0, new: 5 }));
    assert_eq!(tree.consistency_proof(6, 5), Err(ProofError::BadSizes { old: 6, new: 5 }));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_larger_trees_match_the_rfc(n in 301u64..3000, seed in any::<u64>()) {
        let hashes: Vec<Hash> = (0..n).map(|i| Hash::of(&[seed.to_be_bytes(), i.to_be_bytes()].concat())).collect();
        let tree = Tree::from_record_hashes(&hashes);
        let leaves: Vec<Hash> = hashes.iter().map(leaf_hash).collect();
        let root = tree.root(n).unwrap();
        prop_assert_eq!(root, naive_root(&leaves));
        for m in [0, seed % n, n / 2, n - 1] {
            let proof = tree.inclusion_proof(m, n).unwrap();
            prop_assert_eq!(&proof, &naive_path(m as usize, &leaves));
            prop_assert!(verify_inclusion(&leaves[m as usize], m, n, &proof, &root).is_ok());
        }
        for old in [1, seed % n + 1, n / 3 + 1, n] {
            let proof = tree.consistency_proof(old, n).unwrap();
            prop_assert_eq!(&proof, &naive_subproof(old as usize, &leaves, true));
            prop_assert!(verify_consistency(old, n, &naive_root(&leaves[..old as usize]), &root, &proof).is_ok());
        }
    }
}

#[test]
fn nodes_since_lists_exactly_the_new_complete_subtrees() {
    let hashes = record_hashes(13);
    let tree = Tree::from_record_hashes(&hashes);
    let all = tree.nodes_since(0);
    // 13 leaves, 6 pairs, 3 fours, 1 eight.
    assert_eq!(all.len(), 13 + 6 + 3 + 1);
    let old = Tree::from_record_hashes(&hashes[..9]);
    let new: Vec<_> = tree.nodes_since(9);
    let old_nodes = old.nodes_since(0);
    assert_eq!(old_nodes.len() + new.len(), all.len());
    assert!(new.iter().all(|n| !old_nodes.contains(n)));
    assert!(new.contains(&(0, 12, tree.leaf(12).unwrap())));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// A writer pushes a batch's leaves before storing it and truncates them if the store
    /// fails: the truncated tree must be the tree of the first leaves, node for node, and grow
    /// again exactly like it.
    #[test]
    fn a_truncated_tree_is_the_tree_of_its_first_leaves(n in 1u64..700, cut in any::<u64>(), seed in any::<u64>()) {
        let hashes: Vec<Hash> = (0..n + 5).map(|i| Hash::of(&[seed.to_be_bytes(), i.to_be_bytes()].concat())).collect();
        let k = cut % (n + 1);
        let mut tree = Tree::from_record_hashes(&hashes[..n as usize]);
        tree.truncate(k);
        let fresh = Tree::from_record_hashes(&hashes[..k as usize]);
        prop_assert_eq!(tree.len(), k);
        prop_assert_eq!(tree.nodes_since(0), fresh.nodes_since(0));
        prop_assert_eq!(tree.root(k).unwrap(), fresh.root(k).unwrap());
        for h in &hashes[k as usize..] {
            tree.push_record_hash(h);
        }
        let whole = Tree::from_record_hashes(&hashes);
        prop_assert_eq!(tree.nodes_since(0), whole.nodes_since(0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// A server's tree forgets its lower levels once stored: it still grows, roots and stores
    /// exactly like the whole tree; a proof or root that needs a forgotten node is refused,
    /// naming exactly the nodes to fetch, and with those nodes given is the whole tree's.
    #[test]
    fn a_tree_that_forgot_its_lower_levels_gives_the_same_proofs_once_given_the_nodes_it_names(
        n in 1u64..2500, forget in any::<u64>(), grow in 0u64..600, cut in any::<u64>(), seed in any::<u64>()
    ) {
        let hashes: Vec<Hash> = (0..n + grow).map(|i| Hash::of(&[seed.to_be_bytes(), i.to_be_bytes()].concat())).collect();
        let whole = Tree::from_record_hashes(&hashes);
        let mut tree = Tree::from_record_hashes(&hashes[..n as usize]);
        tree.forget_below(forget % (n + 1));
        // A batch pushed and undone, then the growth.
        for h in &hashes[n as usize..] {
            tree.push_record_hash(h);
        }
        tree.truncate(n);
        prop_assert_eq!(tree.len(), n);
        for h in &hashes[n as usize..] {
            tree.push_record_hash(h);
        }
        let len = n + grow;
        prop_assert_eq!(tree.len(), len);
        prop_assert_eq!(tree.root(len).unwrap(), whole.root(len).unwrap());
        prop_assert_eq!(tree.nodes_since(n), whole.nodes_since(n));
        // Fetched: exactly the nodes named, all of them forgotten ones below the kept levels,
        // computed as a store computes them, from the leaves they cover.
        let leaves: Vec<Hash> = hashes.iter().map(leaf_hash).collect();
        let fetch = |missing: &[(u8, u64)]| -> Nodes {
            assert!(missing.iter().all(|(k, i)| tree.node(*k as usize, *i).is_none() && usize::from(*k) < FORGETTABLE_LEVELS));
            missing
                .iter()
                .map(|&(k, i)| {
                    let node = subtree_root(&leaves[(i << k) as usize..((i + 1) << k) as usize]).unwrap();
                    assert_eq!(Some(node), whole.node(k.into(), i));
                    ((k, i), node)
                })
                .collect()
        };
        let size = 1 + cut % len;
        let index = seed % size;
        let old = 1 + (seed / 7) % size;
        let proof = match tree.inclusion_proof(index, size) {
            Ok(p) => p,
            Err(ProofError::Forgotten(missing)) => tree.inclusion_proof_with(index, size, &fetch(&missing)).unwrap(),
            Err(e) => panic!("{e}"),
        };
        prop_assert_eq!(proof, whole.inclusion_proof(index, size).unwrap());
        let proof = match tree.consistency_proof(old, size) {
            Ok(p) => p,
            Err(ProofError::Forgotten(missing)) => tree.consistency_proof_with(old, size, &fetch(&missing)).unwrap(),
            Err(e) => panic!("{e}"),
        };
        prop_assert_eq!(proof, whole.consistency_proof(old, size).unwrap());
        let root = match tree.root(size) {
            Ok(r) => r,
            Err(ProofError::Forgotten(missing)) => tree.root_with(size, &fetch(&missing)).unwrap(),
            Err(e) => panic!("{e}"),
        };
        prop_assert_eq!(root, whole.root(size).unwrap());
    }
}

#[test]
fn a_tree_that_forgot_keeps_its_upper_levels_and_names_the_lower_nodes_a_proof_needs() {
    let hashes = record_hashes(1000);
    let whole = Tree::from_record_hashes(&hashes);
    let mut tree = whole.clone();
    tree.forget_below(1000);
    // The last 1000 − 768 leaves' lower nodes stay, with every node of 256 leaves or more.
    assert_eq!(tree.root(1000).unwrap(), whole.root(1000).unwrap());
    assert_eq!((tree.leaf(767), tree.leaf(768)), (None, whole.leaf(768)));
    assert_eq!(tree.node(8, 0), whole.node(8, 0));
    // A proof of an early leaf needs its forgotten path below level 8: one node per level.
    let Err(ProofError::Forgotten(missing)) = tree.inclusion_proof(3, 1000) else { panic!("a forgotten path") };
    assert_eq!(missing, vec![(0, 2), (1, 0), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1)]);
    // An older root that the upper levels cover needs nothing.
    assert_eq!(tree.root(512).unwrap(), whole.root(512).unwrap());
}

#[test]
fn a_subtree_root_is_the_node_over_a_power_of_two_of_leaves() {
    let leaves: Vec<Hash> = record_hashes(64).iter().map(leaf_hash).collect();
    let whole = Tree::from_record_hashes(&record_hashes(64));
    assert_eq!(subtree_root(&leaves[..1]), Some(leaves[0]));
    assert_eq!(subtree_root(&leaves[32..64]), whole.node(5, 1));
    assert_eq!(subtree_root(&leaves), Some(naive_root(&leaves)));
    // Not a complete subtree: no node.
    assert_eq!(subtree_root(&leaves[..3]), None);
    assert_eq!(subtree_root(&[]), None);
}
