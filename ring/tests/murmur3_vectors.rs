//! Murmur3 tokens checked against an independent implementation.
//!
//! The tables below were produced by `ring/tests/gen_murmur3_vectors.py`, which hashes each key
//! with the DataStax Python driver's Murmur3 (`cassandra.murmur3`, pure Python, cross-checked
//! inside the script against the driver's C extension `cassandra.cmurmur3`) and serializes
//! composite keys with the driver's own routing-key code. Generated with:
//!
//! ```text
//! python3 -m venv /tmp/ringvenv && /tmp/ringvenv/bin/pip install cassandra-driver
//! /tmp/ringvenv/bin/python ring/tests/gen_murmur3_vectors.py
//! ```
//!
//! cassandra-driver 3.30.1; C extension: True.
//!
//! Keys cover every length 0..=40 (so every tail length 0..=15, with and without full blocks),
//! bytes >= 0x80 in the tail (Cassandra reads tail bytes as signed), all-0xff tails, ASCII tails,
//! well-known keys and three composite partition keys. The hash column is the driver's `murmur3`,
//! the first 64-bit half as i64; the token is the same value except for the cases covered below.

use ringdb_ring::murmur3::{hash3_x64_128, serialize_partition_key, token_for_key};
use ringdb_ring::Token;

/// (name, key as hex, driver's murmur3 of the key)
const KEYS: &[(&str, &str, i64)] = &[
    ("len0_high", "", 0),
    ("len1_high", "80", -5284281814142962636),
    ("len2_high", "8087", 2018950863064893639),
    ("len3_high", "80878e", 2883035100252727777),
    ("len4_high", "80878e95", 3009979607048216379),
    ("len5_high", "80878e959c", -2847373446435714001),
    ("len6_high", "80878e959ca3", -2244203985003959096),
    ("len7_high", "80878e959ca3aa", -5968304505574019857),
    ("len8_high", "80878e959ca3aab1", 512842628024960352),
    ("len9_high", "80878e959ca3aab1b8", 683171345539645642),
    ("len10_high", "80878e959ca3aab1b8bf", 7840819521531847175),
    ("len11_high", "80878e959ca3aab1b8bfc6", 422083457162203766),
    (
        "len12_high",
        "80878e959ca3aab1b8bfc6cd",
        1542238518037374429,
    ),
    (
        "len13_high",
        "80878e959ca3aab1b8bfc6cdd4",
        -3139204666512434709,
    ),
    (
        "len14_high",
        "80878e959ca3aab1b8bfc6cdd4db",
        -3282293895579786473,
    ),
    (
        "len15_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2",
        3052317648445578018,
    ),
    (
        "len16_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9",
        -2954592189485143609,
    ),
    (
        "len17_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0",
        5211886051089384206,
    ),
    (
        "len18_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7",
        290286241819710917,
    ),
    (
        "len19_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe",
        1417348501348731975,
    ),
    (
        "len20_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe05",
        322782648576658191,
    ),
    (
        "len21_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c",
        2187147620854267042,
    ),
    (
        "len22_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c13",
        -1362364150429089498,
    ),
    (
        "len23_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a",
        -8925955735606023974,
    ),
    (
        "len24_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21",
        860463995639002433,
    ),
    (
        "len25_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a2128",
        7870898320421091931,
    ),
    (
        "len26_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f",
        -5788397126375755363,
    ),
    (
        "len27_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f36",
        7447406634263774397,
    ),
    (
        "len28_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d",
        5617030000340931781,
    ),
    (
        "len29_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d44",
        -3174703031391442101,
    ),
    (
        "len30_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b",
        2288947131618185122,
    ),
    (
        "len31_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b52",
        1870246301362292004,
    ),
    (
        "len32_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b5259",
        -8273940428225357516,
    ),
    (
        "len33_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960",
        -5068544799612549991,
    ),
    (
        "len34_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b52596067",
        -7664098553734671541,
    ),
    (
        "len35_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960676e",
        5820945124476245487,
    ),
    (
        "len36_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960676e75",
        -1077954955297486926,
    ),
    (
        "len37_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960676e757c",
        6622949033562684817,
    ),
    (
        "len38_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960676e757c83",
        4179970012547358821,
    ),
    (
        "len39_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960676e757c838a",
        4404303501155258401,
    ),
    (
        "len40_high",
        "80878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960676e757c838a91",
        7174760491778422837,
    ),
    ("len1_ascii", "41", 243126998722523514),
    ("len7_ascii", "41424344454647", 4084595352580869704),
    ("len8_ascii", "4142434445464748", -6654309237155570776),
    ("len9_ascii", "414243444546474849", -7451651259853585093),
    (
        "len15_ascii",
        "4142434445464748494a4b4c4d4e4f",
        -8029299476292364442,
    ),
    (
        "len16_ascii",
        "4142434445464748494a4b4c4d4e4f50",
        7480985593658731919,
    ),
    (
        "len17_ascii",
        "4142434445464748494a4b4c4d4e4f5051",
        -7353102298488589807,
    ),
    (
        "len31_ascii",
        "4142434445464748494a4b4c4d4e4f505152535455565758595a4142434445",
        -4323432331335623700,
    ),
    ("ff_x1", "ff", -4442228696663692417),
    ("ff_x8", "ffffffffffffffff", 7071048584287372947),
    (
        "ff_x15",
        "ffffffffffffffffffffffffffffff",
        -2195530867418009455,
    ),
    (
        "ff_x16",
        "ffffffffffffffffffffffffffffffff",
        -2824192546314762522,
    ),
    (
        "ff_x23",
        "ffffffffffffffffffffffffffffffffffffffffffffff",
        1938495958014436960,
    ),
    ("a", "61", -8839064797231613815),
    ("hello", "68656c6c6f", -3758069500696749310),
    (
        "fox",
        "54686520717569636b2062726f776e20666f78206a756d7073206f76657220746865206c617a7920646f67",
        -2068352364225029268,
    ),
    ("int32_1", "00000001", -4069959284402364209),
    ("int32_2", "00000002", -3248873570005575792),
    ("int32_3", "00000003", 9010454139840013625),
    ("int32_4", "00000004", -2729420104000364805),
    ("int32_5", "00000005", -7509452495886106294),
    ("int32_-1", "ffffffff", 7297452126230313552),
    ("bigint_42", "000000000000002a", 8623491988607824794),
];

/// (name, components as hex, driver's serialized routing key as hex, driver's murmur3 of it)
const COMPOSITES: &[(&str, &[&str], &str, i64)] = &[
    (
        "composite_int_text",
        &["00000001", "616263"],
        "00040000000100000361626300",
        8771735466527499816,
    ),
    (
        "composite_text_text_int",
        &["75736572", "c3a974c3a9", "fffffff9"],
        "000475736572000005c3a974c3a9000004fffffff900",
        4476854387232121833,
    ),
    (
        "composite_empty_and_bigint",
        &["", "0000010000000000"],
        "0000000008000001000000000000",
        8252706493016059222,
    ),
];

fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd hex {hex}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn hashes_match_the_python_driver() {
    assert!(KEYS.len() >= 40);
    for &(name, hex, expected) in KEYS {
        let key = unhex(hex);
        let [h1, _] = hash3_x64_128(&key, 0);
        assert_eq!(h1 as i64, expected, "hash of {name} ({hex})");
        let token = token_for_key(&key);
        if key.is_empty() {
            // The driver hashes b'' to 0; Cassandra's partitioner maps the empty key to the
            // minimum token (and refuses to store it).
            assert_eq!(token, Token::MIN, "{name}");
        } else {
            assert_eq!(token, Token(expected), "token of {name} ({hex})");
        }
    }
}

#[test]
fn every_tail_length_is_covered_with_negative_bytes() {
    let mut covered = [false; 16];
    for &(_, hex, _) in KEYS {
        let key = unhex(hex);
        let tail = &key[key.len() - key.len() % 16..];
        if tail.iter().any(|&b| b >= 0x80) || tail.is_empty() {
            covered[key.len() % 16] = true;
        }
    }
    assert_eq!(covered, [true; 16]);
}

#[test]
fn composite_keys_match_the_python_driver() {
    for &(name, components, serialized, expected) in COMPOSITES {
        let parts: Vec<Vec<u8>> = components.iter().map(|c| unhex(c)).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let key = serialize_partition_key(&refs).expect("serializable");
        assert_eq!(key, unhex(serialized), "serialized {name}");
        assert_eq!(token_for_key(&key), Token(expected), "token of {name}");
    }
}

#[test]
fn well_known_cassandra_tokens() {
    // The token of int 1 that every Cassandra user has seen in `SELECT token(k)`.
    assert_eq!(
        token_for_key(&1i32.to_be_bytes()),
        Token(-4069959284402364209)
    );
    // A single-component key is hashed as its raw bytes.
    let single = serialize_partition_key(&[b"hello"]).expect("serializable");
    assert_eq!(token_for_key(&single), Token(-3758069500696749310));
}
