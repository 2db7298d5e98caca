//! Stellar: comparisons (§4.5, §4.9 probes), XDR decoding of real testnet/mainnet transactions and
//! events from upstream's fixtures, fee-bump envelopes, Protocol-23 event specs, the address gate.
//! Expected values were read off the XDR with an independent decoder (the Python stellar-sdk).

use std::sync::Arc;

use chainwatch_core::MonitorMatch;
use chainwatch_core::block::{Block, StellarEvent, StellarLedger, StellarTransaction};
use chainwatch_core::expr::parse;
use chainwatch_core::monitor::{AbiCache, CompiledMonitor, MonitorKey, MonitorSource, NetworkIndex, compile};
use chainwatch_core::stellar::compare::{StellarArg, compile as compile_expr};
use chainwatch_crds::{ChainType, MonitorSpec};
use chainwatch_upstream::monitor_from_upstream;
use serde_json::{Value, json};
use stellar_xdr::{
    FeeBumpTransaction, FeeBumpTransactionEnvelope, FeeBumpTransactionExt, FeeBumpTransactionInnerTx, Limits,
    MuxedAccount, ReadXdr, ScMap, ScMapEntry, ScSymbol, ScVal, TransactionEnvelope, Uint256, VecM, WriteXdr,
};

use crate::evm_compare::Outcome;
use crate::fixtures;

fn stellar_outcome(src: &str, args: &[StellarArg]) -> Outcome {
    let Ok(expr) = parse(src) else { return Outcome::Syntax };
    let Ok(c) = compile_expr(src, &expr, None) else { return Outcome::Type };
    match c.evaluate(&mut |leaf| leaf.eval(args)) {
        Ok(true) => Outcome::True,
        Ok(false) => Outcome::False,
        Err(_) => Outcome::Runtime,
    }
}

fn a(name: &str, kind: &str, value: &str) -> StellarArg {
    StellarArg { name: name.into(), kind: kind.into(), value: value.into() }
}

#[test]
fn upstream_runtime_probes() {
    use Outcome::*;
    let args = [
        a("big", "U256", "1000"),
        a("amt", "I128", "1000"),
        a("v", "Vec", "a,b,C"),
        a("m", "Map<Symbol,Val>", r#"{"k":"V","n":5}"#),
        a("who", "Address", "GDF32CQINROD3E2LMCGZUDVMWTXCJFR5SBYVRJ7WAAIAS3P7DCVWZEFY"),
        a("flag", "Bool", "true"),
        a("n32", "U32", "7"),
        a("list", "Vec", r#"["a","B",{"type":"I128","value":"5"}]"#),
        a("name", "String", "Hello, world!"),
        a("neg", "I64", "-3"),
    ];
    let cases = [
        ("big == 1000", True),
        ("big > 999", Runtime), // u256/i256 only compare for equality
        ("amt > 999", True),
        ("amt > '999'", Runtime), // a number literal is required
        ("v contains 'C'", True),
        ("v contains 'c'", False), // the comma-separated fallback is case-sensitive
        ("v == 'A, B, c'", True),  // …but its equality trims and lower-cases
        ("m.k == 'v'", True),
        ("m contains 'V'", True),
        ("m.n > 4", True), // a number reached by a path is u64
        ("who == gdf32cqinrod3e2lmcgzudvmwtxcjfr5sbyvrj7waaias3p7dcvwzefy", True),
        ("who starts_with 'GDF'", True),
        ("who > 'A'", Runtime),
        ("flag == true", True),
        ("flag == 'true'", Runtime),
        ("n32 >= 7 AND n32 < 8", True),
        ("n32 > -1", Runtime), // -1 is not a u32
        ("list contains 'b'", True),
        ("list contains 5", True), // {"type","value"} elements match on their value
        ("list[2].value == '5'", True), // .value reaches the text inside the {"type","value"} object
        ("list[2] > 4", True),     // the object itself takes its own type (I128)
        ("list[2] == 5", True),
        ("name contains 'WORLD'", True),
        ("neg < 0", True),
        ("missing == 1", Runtime),
    ];
    let mut failures = Vec::new();
    for (src, want) in cases {
        let got = stellar_outcome(src, &args);
        if got != want {
            failures.push(format!("{src}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn tx(v: &Value) -> StellarTransaction {
    StellarTransaction {
        hash: v["txHash"].as_str().unwrap().to_string(),
        status: v["status"].as_str().unwrap().to_string(),
        application_order: v["applicationOrder"].as_u64().unwrap() as u32,
        fee_bump: v["feeBump"].as_bool().unwrap(),
        envelope_xdr: v["envelopeXdr"].as_str().unwrap().to_string(),
        result_xdr: v["resultXdr"].as_str().unwrap().to_string(),
        created_at: v["createdAt"].as_u64().unwrap_or(0),
    }
}

fn event(v: &Value) -> StellarEvent {
    StellarEvent {
        event_type: v["type"].as_str().unwrap().to_string(),
        contract_id: v["contractId"].as_str().unwrap().to_string(),
        id: v["id"].as_str().unwrap().to_string(),
        tx_hash: v["txHash"].as_str().unwrap().to_string(),
        topics: v["topic"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect(),
        value: v["value"].as_str().unwrap().to_string(),
        in_successful_contract_call: v["inSuccessfulContractCall"].as_bool().unwrap(),
    }
}

/// Upstream's fixture transactions and events, grouped into the ledgers they belong to.
fn fixture_ledgers() -> Vec<Block> {
    let txs = fixtures::json("oz-monitor/stellar/transactions.json");
    let events = fixtures::json("oz-monitor/stellar/events.json");
    let mut seqs: Vec<u64> = txs.as_array().unwrap().iter().map(|t| t["ledger"].as_u64().unwrap()).collect();
    seqs.sort();
    seqs.dedup();
    seqs.into_iter()
        .map(|seq| {
            Block::Stellar(StellarLedger {
                sequence: seq as u32,
                hash: format!("{seq:064x}"),
                previous_hash: format!("{:064x}", seq - 1),
                close_time: 0,
                transactions: txs
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["ledger"].as_u64() == Some(seq))
                    .map(tx)
                    .collect(),
                events: events
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["ledger"].as_u64() == Some(seq))
                    .map(event)
                    .collect(),
            })
        })
        .collect()
}

fn compile_stellar(name: &str, spec: &MonitorSpec) -> Arc<CompiledMonitor> {
    let no_config_maps = |r: &chainwatch_crds::ConfigMapKeyRef| Err(format!("no ConfigMap {}", r.name));
    let source = MonitorSource {
        key: MonitorKey::new("tenant-a", name),
        generation: Some(1),
        spec,
        config_maps: &no_config_maps,
    };
    Arc::new(
        compile(&source, ChainType::Stellar, &AbiCache::default())
            .unwrap_or_else(|e| panic!("{name}: {e:?}")),
    )
}

fn run(monitors: &[Arc<CompiledMonitor>], ledgers: &[Block]) -> Vec<MonitorMatch> {
    let index = NetworkIndex::build("stellar-testnet", monitors.iter().cloned());
    ledgers.iter().flat_map(|l| index.match_block(l).0).collect()
}

/// Upstream's Stellar monitor, with the fixture contract spec attached to its addresses (upstream
/// fetches specs from the chain; chainwatch takes them from the Monitor).
fn upstream_monitor() -> MonitorSpec {
    let mut spec =
        monitor_from_upstream(&fixtures::json("oz-monitor/stellar/monitors/monitor.json")).unwrap().spec;
    let contract_spec = fixtures::json("oz-monitor/stellar/contract_specs/contract_spec.json");
    for address in &mut spec.addresses {
        address.contract_spec = Some(contract_spec.as_array().unwrap().clone());
    }
    spec
}

#[test]
fn upstream_stellar_monitor_on_fixture_ledgers() {
    let matches = run(&[compile_stellar("usdc", &upstream_monitor())], &fixture_ledgers());
    let hashes: Vec<String> = matches.iter().map(|m| m.transaction_hash()).collect();
    // 2c89fc…1503: transfer(GDF32…, CC7Y…, 2240) on CBIELTK6… with its transfer event;
    // FAKE5a3a…: upsert_data({myKey1: 1234, myKey2: "Hello, world!"}) on CBWRWC2I…;
    // increment() on CDMZ6LU6… and set_price on CAVLP5DH… have no matching condition.
    assert_eq!(
        hashes,
        [
            "2c89fc3311bc275415ed6a764c77d7b0349cb9f4ce37fd2bbfc6604920811503",
            "FAKE5a3a9153e19002517935a5df291b81a341b98ccd80f0919d78cea5ed29d8"
        ]
    );
    let transfer = &matches[0];
    assert_eq!(transfer.block.number, 317598);
    let f = &transfer.matched_on_args.functions[0];
    assert_eq!(f.signature, "transfer(Address,Address,I128)");
    let args: Vec<(&str, &str, &str)> =
        f.args.iter().map(|a| (a.name.as_str(), a.kind.as_str(), a.value.as_str())).collect();
    assert_eq!(
        args,
        [
            ("from", "Address", "GDF32CQINROD3E2LMCGZUDVMWTXCJFR5SBYVRJ7WAAIAS3P7DCVWZEFY"),
            ("to", "Address", "CC7YMFMYZM2HE6O3JT5CNTFBHVXCZTV7CEYT56IGBHR4XFNTGTN62CPT"),
            ("amount", "I128", "2240")
        ]
    );
    let e = &transfer.matched_on_args.events[0];
    assert_eq!(e.signature, "transfer(Address,Address,String,I128)");
    let values: Vec<&str> = e.args.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(
        values,
        [
            "GDF32CQINROD3E2LMCGZUDVMWTXCJFR5SBYVRJ7WAAIAS3P7DCVWZEFY",
            "CC7YMFMYZM2HE6O3JT5CNTFBHVXCZTV7CEYT56IGBHR4XFNTGTN62CPT",
            "USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5",
            "2240"
        ]
    );
    assert_eq!(e.args.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["0", "1", "2", "3"]);
    assert!(e.args[0].indexed && e.args[2].indexed && !e.args[3].indexed);
    assert_eq!(transfer.matched_on.transactions.len(), 1);

    let upsert = &matches[1].matched_on_args.functions[0];
    assert_eq!(upsert.signature, "upsert_data(Map<String,String>)");
    assert_eq!(upsert.args[0].kind, "Map");
    let data: Value = serde_json::from_str(&upsert.args[0].value).unwrap();
    assert_eq!(data, json!({"myKey1": 1234, "myKey2": "Hello, world!"}));
}

#[test]
fn function_needs_the_contract_spec() {
    let mut spec = upstream_monitor();
    for address in &mut spec.addresses {
        address.contract_spec = None;
    }
    spec.match_conditions.events.clear();
    let compiled = compile_stellar("no-spec", &spec);
    assert!(compiled.warnings.iter().any(|w| w.contains("spec")), "{:?}", compiled.warnings);
    assert!(run(&[compiled], &fixture_ledgers()).is_empty());
}

#[test]
fn fee_bump_inner_transactions_are_decoded() {
    let ledgers = fixture_ledgers();
    let Block::Stellar(mut ledger) = ledgers.into_iter().find(|l| l.number() == 317598).unwrap() else {
        unreachable!()
    };
    let t = ledger.transactions.iter_mut().find(|t| t.hash.starts_with("2c89fc3311")).unwrap();
    let TransactionEnvelope::Tx(inner) =
        TransactionEnvelope::from_xdr_base64(&t.envelope_xdr, Limits::none()).unwrap()
    else {
        panic!("the fixture transaction is a v1 envelope")
    };
    let bumped = TransactionEnvelope::TxFeeBump(FeeBumpTransactionEnvelope {
        tx: FeeBumpTransaction {
            fee_source: MuxedAccount::Ed25519(Uint256([7; 32])),
            fee: 10_000,
            inner_tx: FeeBumpTransactionInnerTx::Tx(inner),
            ext: FeeBumpTransactionExt::V0,
        },
        signatures: VecM::default(),
    });
    t.envelope_xdr = bumped.to_xdr_base64(Limits::none()).unwrap();
    t.fee_bump = true;
    let matches = run(&[compile_stellar("usdc", &upstream_monitor())], &[Block::Stellar(ledger)]);
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].matched_on_args.functions[0].signature, "transfer(Address,Address,I128)");
}

fn sym(s: &str) -> ScVal {
    ScVal::Symbol(ScSymbol(s.try_into().unwrap()))
}

fn string(s: &str) -> ScVal {
    ScVal::String(stellar_xdr::ScString(s.try_into().unwrap()))
}

/// Ledger 808663 of upstream's fixtures with one more contract event of CDMZ6LU6… emitted by its
/// transaction 80fec04b… (upstream's fixtures have no Protocol-23 events of their own).
fn ledger_808663_with_event(id: &str, topics: &[ScVal], value: &ScVal) -> StellarLedger {
    let Block::Stellar(mut ledger) = fixture_ledgers().into_iter().find(|l| l.number() == 808663).unwrap()
    else {
        unreachable!()
    };
    let tx_hash = ledger.transactions.iter().find(|t| t.hash.starts_with("80fec04b")).unwrap().hash.clone();
    let b64 = |v: &ScVal| v.to_xdr_base64(Limits::none()).unwrap();
    ledger.events.push(StellarEvent {
        event_type: "contract".into(),
        contract_id: "CDMZ6LU66KEMLKI3EJBIGXTZ4KZ2CRTSHZETMY3QQZBWRKVKB5EIOHTX".into(),
        id: id.into(),
        tx_hash,
        topics: topics.iter().map(b64).collect(),
        value: b64(value),
        in_successful_contract_call: true,
    });
    ledger
}

#[test]
fn protocol_23_event_specs_name_and_type_parameters() {
    const CONTRACT: &str = "CDMZ6LU66KEMLKI3EJBIGXTZ4KZ2CRTSHZETMY3QQZBWRKVKB5EIOHTX";
    let value = ScVal::Map(Some(ScMap(
        vec![
            ScMapEntry { key: sym("age"), val: ScVal::U32(30) },
            ScMapEntry { key: sym("email"), val: string("alice@example.com") },
            ScMapEntry { key: sym("name"), val: string("Alice") },
        ]
        .try_into()
        .unwrap(),
    )));
    let ledger = ledger_808663_with_event(
        "0003473148903411712-0000000000",
        &[sym("user"), sym("add"), sym("u42")],
        &value,
    );
    let spec: MonitorSpec = serde_json::from_value(json!({
        "networks": ["stellar-testnet"],
        "addresses": [{"address": CONTRACT, "contractSpec": fixtures::json("oz-monitor/stellar/contract_specs/contract_spec_with_events.json")}],
        "matchConditions": {"events": [{"signature": "UserAdded(Symbol,String,U32,String)", "expression": "age >= 18 AND name == 'alice' AND id == 'U42'"}]},
    }))
    .unwrap();
    let matches = run(&[compile_stellar("users", &spec)], &[Block::Stellar(ledger.clone())]);
    assert_eq!(matches.len(), 1);
    let e = &matches[0].matched_on_args.events[0];
    let args: Vec<(&str, &str, &str, bool)> =
        e.args.iter().map(|a| (a.name.as_str(), a.kind.as_str(), a.value.as_str(), a.indexed)).collect();
    assert_eq!(
        args,
        [
            ("id", "Symbol", "u42", true),
            ("name", "String", "Alice", false),
            ("age", "U32", "30", false),
            ("email", "String", "alice@example.com", false)
        ]
    );
    // a type error against the spec is reported when compiling
    let mut bad = spec.clone();
    bad.match_conditions.events[0].expression = Some("age > '18'".into());
    let no_config_maps = |r: &chainwatch_crds::ConfigMapKeyRef| Err(format!("no ConfigMap {}", r.name));
    let source = MonitorSource {
        key: MonitorKey::new("t", "bad"),
        generation: None,
        spec: &bad,
        config_maps: &no_config_maps,
    };
    let errors = compile(&source, ChainType::Stellar, &AbiCache::default()).unwrap_err();
    assert!(errors[0].message.contains("number literal"), "{errors:?}");
}

#[test]
fn the_address_gate_applies_to_stellar_transaction_conditions() {
    // Upstream evaluates every successful transaction of the ledger for a monitor that has only
    // transaction conditions; chainwatch only those that touch the monitor's addresses.
    let spec: MonitorSpec = serde_json::from_value(json!({
        "networks": ["stellar-testnet"],
        "addresses": [{"address": "CDMZ6LU66KEMLKI3EJBIGXTZ4KZ2CRTSHZETMY3QQZBWRKVKB5EIOHTX"}],
        "matchConditions": {"transactions": [{"status": "Success"}]},
    }))
    .unwrap();
    let matches = run(&[compile_stellar("gate", &spec)], &fixture_ledgers());
    let hashes: Vec<String> = matches.iter().map(|m| m.transaction_hash()).collect();
    assert_eq!(hashes, ["80fec04b989895a4222d9985fbf153d253e3e2cbc1da45ef414db96a277b99be"]);
    let successful = fixtures::json("oz-monitor/stellar/transactions.json")
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "SUCCESS")
        .count();
    assert!(successful > 10, "upstream would have matched {successful} transactions");
}

#[test]
fn transaction_conditions_see_payments_per_operation() {
    // 5dc68f8a0f… (ledger 317598) failed with two payments (49.8 and 0.2 XLM) from an operation
    // source account that is not the transaction's; a Failure condition with an expression over
    // the payments matches when any operation satisfies it.
    let txs = fixtures::json("oz-monitor/stellar/transactions.json");
    let t = txs
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["txHash"].as_str().unwrap().starts_with("5dc68f8a0f"))
        .unwrap();
    let decoded = chainwatch_core::stellar::decode::transaction(&tx(t)).unwrap();
    assert_eq!(decoded.source, "GCHTFFIG3GG7SWIKKH4NXF3SARDCOAOPCUTP4EOTNULDSAU75NOZ27LR");
    let source = "GC6ICL6XLKEYWWQAHTOGIDZC3VG3ZO7XPEUV3AV3O4EUZTLBMNJUB4AY";
    let amounts: Vec<(String, i64)> = decoded
        .operations
        .iter()
        .filter_map(|op| match op.kind {
            chainwatch_core::stellar::decode::OpKind::Payment { amount, .. } => {
                Some((op.source.clone(), amount))
            }
            _ => None,
        })
        .collect();
    assert_eq!(amounts, [(source.to_string(), 498_000_000), (source.to_string(), 2_000_000)]);
    let max = 498_000_000;
    let spec = |expr: String| -> MonitorSpec {
        serde_json::from_value(json!({"networks": ["s"], "addresses": [{"address": source}],
            "matchConditions": {"transactions": [{"status": "Failure", "expression": expr}]}}))
        .unwrap()
    };
    let ledgers = fixture_ledgers();
    let hit = run(&[compile_stellar("pay", &spec(format!("value == {max} AND from == {source}")))], &ledgers);
    assert!(hit.iter().any(|m| m.transaction_hash().starts_with("5dc68f8a0f")));
    let miss = run(&[compile_stellar("pay", &spec(format!("value > {max}")))], &ledgers);
    assert!(!miss.iter().any(|m| m.transaction_hash().starts_with("5dc68f8a0f")));
}

/// Upstream names a `BytesN<32>` parameter `Bytes32` (and `BytesN<128>` `Bytes128`) in signatures
/// and kinds; a condition may use that spelling or `BytesN<32>`, and both match.
#[test]
fn fixed_length_bytes_are_named_as_upstream_names_them() {
    const CONTRACT: &str = "CDMZ6LU66KEMLKI3EJBIGXTZ4KZ2CRTSHZETMY3QQZBWRKVKB5EIOHTX";
    let bytes = |n: usize| ScVal::Bytes(stellar_xdr::ScBytes(vec![0xab; n].try_into().unwrap()));
    let value = ScVal::Vec(Some(stellar_xdr::ScVec(
        vec![string("ping"), string("pong"), bytes(32), bytes(128)].try_into().unwrap(),
    )));
    let ledger = Block::Stellar(ledger_808663_with_event(
        "0003473148903411712-0000000001",
        &[sym("contract_called"), sym("caller")],
        &value,
    ));
    let param = |name: &str, ty: Value, location: &str| json!({"doc": "", "name": name, "type_": ty, "location": location});
    let contract_spec = json!([{"event_v0": {"doc": "", "lib": "", "name": "contract_called", "prefix_topics": ["contract_called"],
        "params": [param("caller", json!("symbol"), "topic_list"), param("a", json!("string"), "data"), param("b", json!("string"), "data"),
                   param("digest", json!({"bytes_n": {"n": 32}}), "data"), param("blob", json!({"bytes_n": {"n": 128}}), "data")],
        "data_format": "vec"}}]);
    let monitor = |signature: &str, expression: Option<&str>| -> MonitorSpec {
        serde_json::from_value(json!({
            "networks": ["stellar-testnet"],
            "addresses": [{"address": CONTRACT, "contractSpec": contract_spec}],
            "matchConditions": {"events": [{"signature": signature, "expression": expression}]},
        }))
        .unwrap()
    };
    for signature in [
        "contract_called(Symbol,String,String,Bytes32,Bytes128)",
        "contract_called(Symbol, String, String, BytesN<32>, BytesN<128>)",
    ] {
        let matches =
            run(&[compile_stellar("bytes", &monitor(signature, None))], std::slice::from_ref(&ledger));
        assert_eq!(matches.len(), 1, "{signature}");
        let e = &matches[0].matched_on_args.events[0];
        assert_eq!(e.signature, "contract_called(Symbol,String,String,Bytes32,Bytes128)");
        assert_eq!(
            matches[0].matched_on.events[0].signature, e.signature,
            "matched_on: the canonical signature"
        );
        let kinds: Vec<&str> = e.args.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["Symbol", "String", "String", "Bytes32", "Bytes128"]);
    }
    // the bytes compare as text (hex)
    let expr = format!("digest == '{}'", "ab".repeat(32));
    let with = monitor("contract_called(Symbol,String,String,Bytes32,Bytes128)", Some(&expr));
    assert_eq!(run(&[compile_stellar("bytes-expr", &with)], std::slice::from_ref(&ledger)).len(), 1);
    // a signature that neither the spec nor an event without one can produce is a warning
    let spec = monitor("contract_called(Symbol,String,String,Bytes64,Bytes128)", None);
    let compiled = compile_stellar("typo", &spec);
    assert!(
        compiled.warnings.iter().any(|w| w.contains("events[0].signature") && w.contains("matches nothing")),
        "{:?}",
        compiled.warnings
    );
    assert!(
        compile_stellar("ok", &monitor("contract_called(Symbol,String,String,Bytes32,Bytes128)", None))
            .warnings
            .is_empty()
    );
}

/// Upstream: comparing a `String` with a number literal is a type error (the condition never
/// matches), so `name != 1` matches nothing; chainwatch reports it when compiling.
#[test]
fn a_string_compared_with_a_number_is_a_type_error() {
    use Outcome::*;
    let args = [a("name", "String", "Alice")];
    assert_eq!(stellar_outcome("name == 1", &args), Runtime);
    assert_eq!(stellar_outcome("name != 1", &args), Runtime);
    assert_eq!(stellar_outcome("name != '1'", &args), True);
    let known = [("name".to_string(), "String".to_string())];
    for src in ["name == 1", "name != 1", "name contains 1"] {
        let err = compile_expr(src, &parse(src).unwrap(), Some(&known)).unwrap_err();
        assert!(err.to_string().contains("not a number"), "{src}: {err}");
    }
    assert!(compile_expr("name == '1'", &parse("name == '1'").unwrap(), Some(&known)).is_ok());
}

/// Upstream renders `Void` as the empty string (its JSON form stays `null`).
#[test]
fn void_renders_as_the_empty_string() {
    assert_eq!(chainwatch_core::stellar::scval::text(&ScVal::Void), "");
    assert_eq!(chainwatch_core::stellar::scval::to_json(&ScVal::Void), Value::Null);
}
