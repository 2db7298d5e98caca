//! Golden tests on real EVM data: upstream's own fixture monitors and blocks, and Ethereum mainnet
//! block 18,000,000 with all 94 receipts. Expected transactions, arguments and counts were read off
//! the raw JSON-RPC data (hex slices of inputs, topics and log data), not from running this code.

use std::sync::Arc;

use chainwatch_core::MonitorMatch;
use chainwatch_core::block::{Block, EvmBlock};
use chainwatch_core::monitor::{AbiCache, CompiledMonitor, MonitorKey, MonitorSource, NetworkIndex, compile};
use chainwatch_crds::{ChainType, MonitorSpec, TransactionStatus};
use chainwatch_upstream::monitor_from_upstream;
use serde_json::{Value, json};

use crate::fixtures;

pub fn compile_evm(name: &str, spec: &MonitorSpec) -> Arc<CompiledMonitor> {
    let no_config_maps = |r: &chainwatch_crds::ConfigMapKeyRef| Err(format!("no ConfigMap {}", r.name));
    let source = MonitorSource {
        key: MonitorKey::new("tenant-a", name),
        generation: Some(1),
        spec,
        config_maps: &no_config_maps,
    };
    Arc::new(
        compile(&source, ChainType::Evm, &AbiCache::default()).unwrap_or_else(|e| panic!("{name}: {e:?}")),
    )
}

fn upstream_monitor(rel: &str) -> MonitorSpec {
    monitor_from_upstream(&fixtures::json(rel)).unwrap().spec
}

/// Upstream's fixture blocks with the receipts recorded for them (some transactions have none).
fn upstream_blocks() -> Vec<Block> {
    let receipts: Vec<Value> =
        fixtures::json("oz-monitor/evm/transaction_receipts.json").as_array().unwrap().clone();
    fixtures::json("oz-monitor/evm/blocks.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let b = &b["EVM"];
            let mine: Vec<Value> =
                receipts.iter().filter(|r| r["blockNumber"] == b["number"]).cloned().collect();
            Block::Evm(EvmBlock::from_rpc_partial(b, &mine).unwrap())
        })
        .collect()
}

pub fn block_18m() -> Block {
    let block = fixtures::rpc_result("eth_getBlockByNumber/test_08.json");
    let receipts = fixtures::rpc_result("eth_getBlockReceipts/test_02.json");
    Block::Evm(EvmBlock::from_rpc(&block, receipts.as_array().unwrap()).unwrap())
}

fn run(monitors: &[Arc<CompiledMonitor>], blocks: &[Block]) -> Vec<MonitorMatch> {
    let index = NetworkIndex::build("ethereum-mainnet", monitors.iter().cloned());
    blocks.iter().flat_map(|b| index.match_block(b).0).collect()
}

fn hashes(matches: &[MonitorMatch]) -> Vec<String> {
    matches.iter().map(|m| m.transaction_hash()).collect()
}

fn args(list: &[chainwatch_core::matches::MatchedArg]) -> Vec<(String, String)> {
    list.iter().map(|a| (a.name.clone(), a.value.clone())).collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn upstream_usdc_monitor_on_upstream_blocks() {
    let monitor = compile_evm("usdc", &upstream_monitor("oz-monitor/evm/monitors/monitor.json"));
    let matches = run(&[monitor], &upstream_blocks());
    // 21306058: the USDC transfer of 8,181.71 USDC from 0x58b7… to 0xf423… matches the function
    // (value > 0), the event (to, from and value > 8,000,000,000) and the transaction condition.
    // 8219488: increment() on the second contract matches the function without expression.
    // 21306059/21306060 have no recorded receipts, so `status: Success` cannot hold: no match.
    assert_eq!(
        hashes(&matches),
        [
            "0xd5069b22a3a89a36d592d5a1f72a281bc5d11d6d0bac6f0a878c13abb764b6d8",
            "0x6fb716f3fc4e2edec31f01c8bb67e565e3efacba965090a38835d3f297232bf6"
        ]
    );
    let usdc = &matches[0];
    assert_eq!(usdc.block.number, 21306058);
    assert_eq!(usdc.matched_on.functions.len(), 1);
    // matched_on names what matched by its canonical signature (the monitor says
    // "transfer(address, uint256)") and the transaction by the status it had
    assert_eq!(usdc.matched_on.functions[0].signature, "transfer(address,uint256)");
    assert_eq!(usdc.matched_on.functions[0].expression.as_deref(), Some("value > 0"));
    assert_eq!(usdc.matched_on.events[0].signature, "Transfer(address,address,uint256)");
    assert_eq!(usdc.matched_on.transactions[0].expression.as_deref(), Some("value >= 0"));
    assert_eq!(usdc.matched_on.transactions[0].status, TransactionStatus::Success);
    let f = &usdc.matched_on_args.functions[0];
    assert_eq!(f.signature, "transfer(address,uint256)");
    assert_eq!(
        args(&f.args),
        pairs(&[("to", "0xf423d9c1ffeb6386639d024f3b241dab2331b635"), ("value", "8181710000")])
    );
    let e = &usdc.matched_on_args.events[0];
    assert_eq!(e.signature, "Transfer(address,address,uint256)");
    assert_eq!(
        e.hex_signature.as_deref(),
        Some("0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")
    );
    assert_eq!(e.log_index, Some(0x161));
    assert_eq!(
        args(&e.args),
        pairs(&[
            ("from", "0x58b704065b7aff3ed351052f8560019e05925023"),
            ("to", "0xf423d9c1ffeb6386639d024f3b241dab2331b635"),
            ("value", "8181710000")
        ])
    );
    assert!(e.args[0].indexed && e.args[1].indexed && !e.args[2].indexed);
    let inc = &matches[1];
    assert_eq!(inc.matched_on_args.functions[0].signature, "increment()");
    assert!(inc.matched_on.events.is_empty());
}

#[test]
fn upstream_tuple_monitor_on_nested_struct_call() {
    // Block 26966585 calls inputNestedStruct((true, "The Book Title", "Author Name", 123,
    // 0x1234…5678, ["fiction", "bestseller"], ("The Sequel", 321))). Its receipt is not in the
    // fixtures; the transaction condition needs one, so the test states it: a success without logs.
    let blocks = upstream_blocks();
    let Block::Evm(mut block) = blocks.into_iter().find(|b| b.number() == 26966585).unwrap() else {
        unreachable!()
    };
    block.transactions[0].receipt = Some(chainwatch_core::block::EvmReceipt {
        status: Some(true),
        gas_used: 100_000,
        effective_gas_price: None,
        contract_address: None,
        logs: vec![],
    });
    let block = Block::Evm(block);
    let spec = upstream_monitor("oz-monitor/evm/monitors/monitor_with_tuples.json");
    let matches = run(&[compile_evm("tuples", &spec)], std::slice::from_ref(&block));
    assert_eq!(hashes(&matches), ["0xf4b47a82f9fb401042e75e745b980d7cd7954d2de091da1942432c765000ea26"]);
    let f = &matches[0].matched_on_args.functions[0];
    assert_eq!(
        f.signature,
        "inputNestedStruct((bool,string,string,uint256,address,string[],(string,uint256)))"
    );
    assert_eq!(
        f.args[0].value,
        r#"(true,"The Book Title","Author Name",123,"0x1234567890abcdef1234567890abcdef12345678",["fiction","bestseller"],("The Sequel",321))"#
    );
    assert_eq!(f.args[0].kind, "tuple");

    let with = |expression: &str| {
        let mut s = spec.clone();
        s.match_conditions.functions[0].expression = Some(expression.to_string());
        run(&[compile_evm("variant", &s)], std::slice::from_ref(&block)).len()
    };
    assert_eq!(with("nestedStruct contains 'the book title'"), 1, "contains is case-insensitive");
    assert_eq!(with("nestedStruct contains 'bestseller'"), 1, "contains reaches nested arrays");
    assert_eq!(with("nestedStruct contains 321"), 1, "and nested tuples");
    assert_eq!(with("nestedStruct contains 'Missing Title'"), 0);
    let upstream_text = r#"(true,"The Book Title","Author Name",123,"0x1234567890abcdef1234567890abcdef12345678",["fiction","bestseller"],("The Sequel",321))"#;
    assert_eq!(with(&format!("nestedStruct == '{upstream_text}'")), 1, "equality with upstream's text");
    assert_eq!(with(&format!("nestedStruct != '{upstream_text}'")), 0);
    assert_eq!(
        with(
            "nestedStruct == '(true,The Book Title,Author Name,123,0x1234567890abcdef1234567890abcdef12345678,[fiction,bestseller],(The Sequel,321))'"
        ),
        0,
        "the unquoted text is not upstream's"
    );
    assert_eq!(with("nestedStruct.book_id == 123 AND nestedStruct.meta.pages > 300"), 1);
    assert_eq!(with("nestedStruct.tags[1] == 'BESTSELLER'"), 1);
    assert_eq!(
        with(
            r#"nestedStruct == '(true, "The Book Title", "Author Name", 123, "0x1234567890abcdef1234567890abcdef12345678", ["fiction", "bestseller"], ("The Sequel", 321))'"#
        ),
        1
    );
}

fn erc20(address: &str, conditions: Value) -> MonitorSpec {
    serde_json::from_value(json!({
        "networks": ["ethereum-mainnet"],
        "addresses": [{"address": address, "contractSpec": [
            {"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
                {"indexed": true, "name": "from", "type": "address"},
                {"indexed": true, "name": "to", "type": "address"},
                {"indexed": false, "name": "value", "type": "uint256"}]},
            {"type": "function", "name": "transfer", "stateMutability": "nonpayable", "inputs": [
                {"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}], "outputs": [{"name": "", "type": "bool"}]}
        ]}],
        "matchConditions": conditions,
        "triggers": ["t"],
    }))
    .unwrap()
}

const USDT: &str = "0xdAC17F958D2ee523a2206206994597C13D831ec7";

#[test]
fn large_usdt_transfers_in_mainnet_block_18m() {
    let spec = erc20(
        USDT,
        json!({"events": [{"signature": "Transfer(address,address,uint256)", "expression": "value > 1000000000"}],
                                  "transactions": [{"status": "Success"}]}),
    );
    let matches = run(&[compile_evm("usdt-large", &spec)], &[block_18m()]);
    assert_eq!(
        hashes(&matches),
        [
            "0xc1e64199d60a6420e360ba326f4026eb61a085481baaec99f2f49224f1b1e96a",
            "0x831b4c265b7b03bf169e3760afad30b985632dad46826e3b76705bda64579f96"
        ]
    );
    assert_eq!(matches[0].matched_on_args.events[0].log_index, Some(199));
    assert_eq!(matches[0].matched_on_args.events[0].args[2].value, "1285000000");
    assert_eq!(matches[1].matched_on_args.events[0].args[2].value, "1823170000");
}

#[test]
fn one_match_per_transaction_with_every_matching_log() {
    // 0x6742cd57… emits 39 zero-value USDT transfers: one match, 39 aligned event entries.
    let spec = erc20(
        USDT,
        json!({"events": [{"signature": "Transfer(address,address,uint256)", "expression": "value == 0"}]}),
    );
    let matches = run(&[compile_evm("usdt-zero", &spec)], &[block_18m()]);
    assert_eq!(hashes(&matches), ["0x6742cd57e6aefce4b96887bb3090371ac49414c6b45a21e43d9e41e0ea9ed5ab"]);
    let m = &matches[0];
    assert_eq!(m.matched_on.events.len(), 39);
    assert_eq!(m.matched_on_args.events.len(), 39);
    let indexes: Vec<u64> = m.matched_on_args.events.iter().map(|e| e.log_index.unwrap()).collect();
    assert_eq!(indexes[..4], [1, 2, 3, 4]);
    assert_eq!(*indexes.last().unwrap(), 51);
}

#[test]
fn transaction_status_comes_from_the_receipt() {
    // Two transactions to 0x3fc91a… reverted (receipt status 0x0) while the block has plenty of
    // logs: upstream (#498) would assume success for both. Thirteen others succeeded.
    let address = "0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad";
    let with_status = |status: &str| -> MonitorSpec {
        serde_json::from_value(json!({"networks": ["ethereum-mainnet"], "addresses": [{"address": address}],
            "matchConditions": {"transactions": [{"status": status}]}}))
        .unwrap()
    };
    let failed = run(&[compile_evm("failed", &with_status("Failure"))], &[block_18m()]);
    assert_eq!(
        hashes(&failed),
        [
            "0xec080b91deea33830c3e626201662243c66c1f3d10da01f32c4cb0ebf395012a",
            "0x10a315bbd6c9500b24debc5882cc7d9193ed314b864e26a23a2d4d343dfdfc28"
        ]
    );
    let ok = run(&[compile_evm("ok", &with_status("Success"))], &[block_18m()]);
    assert_eq!(ok.len(), 13);
    assert!(!hashes(&ok).iter().any(|h| h.starts_with("0xec080b91") || h.starts_with("0x10a315bb")));
    let any = run(&[compile_evm("any", &with_status("Any"))], &[block_18m()]);
    assert_eq!(any.len(), 15);
}

#[test]
fn address_gate_and_combination_rules() {
    let block = block_18m();
    // no conditions: every transaction touching USDT (45 transfers in 7 transactions + direct calls)
    let all = run(&[compile_evm("all", &erc20(USDT, json!({})))], std::slice::from_ref(&block));
    let touching: Vec<String> = hashes(&all);
    assert_eq!(touching.len(), 7);
    // a function condition alone: the six direct calls whose selector is transfer (0xa9059cbb)
    // are five; 0xcf2e9d… calls transferFrom, which this ABI does not declare
    let f = run(
        &[compile_evm("f", &erc20(USDT, json!({"functions": [{"signature": "transfer(address,uint256)"}]})))],
        std::slice::from_ref(&block),
    );
    assert_eq!(f.len(), 5);
    // functions OR events, AND the transaction condition
    let both = erc20(
        USDT,
        json!({
        "functions": [{"signature": "transfer(address,uint256)", "expression": "value > 1000000000"}],
        "events": [{"signature": "Transfer(address,address,uint256)", "expression": "value > 400000000"}],
        "transactions": [{"status": "Success", "expression": "gas_used > 0"}]}),
    );
    let m = run(&[compile_evm("both", &both)], std::slice::from_ref(&block));
    // events above 400 USDT: 466.05 (0x07299f…), 1285 (0xc1e641…), 1823.17 (0x831b4c…);
    // the functions above 1000 USDT are the same two large ones
    assert_eq!(
        hashes(&m),
        [
            "0x07299f40780ea95a029aa3f2d368f78274fcfc128f3664972f7414704f642803",
            "0xc1e64199d60a6420e360ba326f4026eb61a085481baaec99f2f49224f1b1e96a",
            "0x831b4c265b7b03bf169e3760afad30b985632dad46826e3b76705bda64579f96"
        ]
    );
    assert!(m[0].matched_on.functions.is_empty(), "466.05 USDT is below the function threshold");
    assert_eq!(m[1].matched_on.functions.len(), 1);
    // a monitor on an address with no transaction in the block never runs
    let none = run(
        &[compile_evm("none", &erc20("0x0000000000000000000000000000000000000001", json!({})))],
        &[block],
    );
    assert!(none.is_empty());
}

#[test]
fn matches_are_ordered_by_transaction_then_monitor() {
    let a = compile_evm(
        "b-second",
        &erc20(
            USDT,
            json!({"events": [{"signature": "Transfer(address,address,uint256)", "expression": "value > 1000000000"}]}),
        ),
    );
    let b = compile_evm(
        "a-first",
        &erc20(
            USDT,
            json!({"events": [{"signature": "Transfer(address,address,uint256)", "expression": "value > 1000000000"}]}),
        ),
    );
    let matches = run(&[a, b], &[block_18m()]);
    let order: Vec<(String, String)> = matches
        .iter()
        .map(|m| (m.transaction_hash()[..10].to_string(), m.monitor.key.name.clone()))
        .collect();
    assert_eq!(
        order,
        [
            ("0xc1e64199", "a-first"),
            ("0xc1e64199", "b-second"),
            ("0x831b4c26", "a-first"),
            ("0x831b4c26", "b-second")
        ]
        .map(|(h, n)| (h.to_string(), n.to_string()))
    );
}

/// One monitor over USDC (`Transfer(from, to, value)`) and WETH (`Transfer(src, dst, wad)`):
/// upstream evaluates the expression per contract, a comparison on a parameter the contract does
/// not have fails there ("Base parameter not found"), and AND/OR decide left to right as always.
/// Expected matches are read off the raw receipts of block 18,000,000 here, not from chainwatch.
#[test]
fn an_expression_that_fits_some_of_the_monitors_contracts_applies_to_those() {
    const USDC: &str = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";
    const WETH: &str = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2";
    const TRANSFER: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
    const USDC_MIN: u128 = 1_000_000_000; // 1,000 USDC
    const WETH_MIN: u128 = 400_000_000_000_000_000; // 0.4 WETH
    let transfer = |names: [&str; 3]| {
        json!([{"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
            {"indexed": true, "name": names[0], "type": "address"},
            {"indexed": true, "name": names[1], "type": "address"},
            {"indexed": false, "name": names[2], "type": "uint256"}]}])
    };
    let monitor = |expression: &str| -> MonitorSpec {
        serde_json::from_value(json!({
            "networks": ["ethereum-mainnet"],
            "addresses": [{"address": USDC, "contractSpec": transfer(["from", "to", "value"])},
                          {"address": WETH, "contractSpec": transfer(["src", "dst", "wad"])}],
            "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)", "expression": expression}]},
            "triggers": ["t"],
        }))
        .unwrap()
    };
    // transactions with a Transfer log of `contract` above `min`, from the receipts
    let receipts = fixtures::rpc_result("eth_getBlockReceipts/test_02.json");
    let above = |contract: &str, min: u128| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in receipts.as_array().unwrap() {
            let big = r["logs"].as_array().unwrap().iter().any(|l| {
                l["address"].as_str().unwrap().eq_ignore_ascii_case(contract)
                    && l["topics"][0] == TRANSFER
                    && l["topics"].as_array().unwrap().len() == 3
                    && u128::from_str_radix(l["data"].as_str().unwrap().trim_start_matches("0x"), 16)
                        .is_ok_and(|v| v > min)
            });
            let hash = r["transactionHash"].as_str().unwrap().to_string();
            if big && !out.contains(&hash) {
                out.push(hash);
            }
        }
        out
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (usdc_big, weth_big) = (above(USDC, USDC_MIN), above(WETH, WETH_MIN));
    assert!(!usdc_big.is_empty() && !weth_big.is_empty(), "the block has large transfers of both");

    // USDC decides `value > …` first; on WETH `value` fails before `wad` is reached
    let usdc_first = compile_evm("usdc-first", &monitor(&format!("value > {USDC_MIN} OR wad > {WETH_MIN}")));
    assert!(
        usdc_first.warnings.iter().any(|w| w.contains(WETH) && w.contains("no parameter `value`")),
        "{:?}",
        usdc_first.warnings
    );
    assert!(usdc_first.warnings.iter().any(|w| w.contains(USDC) && w.contains("no parameter `wad`")));
    assert_eq!(sorted(hashes(&run(&[usdc_first], &[block_18m()]))), sorted(usdc_big.clone()));
    // and the other way round
    let weth_first = compile_evm("weth-first", &monitor(&format!("wad > {WETH_MIN} OR value > {USDC_MIN}")));
    assert_eq!(sorted(hashes(&run(&[weth_first], &[block_18m()]))), sorted(weth_big));

    // a name no contract of the monitor has is still a typo, and an error
    let no_config_maps = |r: &chainwatch_crds::ConfigMapKeyRef| Err(format!("no ConfigMap {}", r.name));
    let typo = monitor(&format!("value > {USDC_MIN} OR wda > {WETH_MIN}"));
    let source = MonitorSource {
        key: MonitorKey::new("t", "typo"),
        generation: None,
        spec: &typo,
        config_maps: &no_config_maps,
    };
    let errors = compile(&source, ChainType::Evm, &AbiCache::default()).unwrap_err();
    assert!(errors.iter().all(|e| e.message.contains("unknown parameter `wda`")), "{errors:?}");
    // a path that fits one contract's tuple applies there; the other is named in a warning
    let order = |component: &str| {
        json!([{"type": "function", "name": "place", "stateMutability": "nonpayable", "outputs": [], "inputs": [
            {"name": "o", "type": "tuple", "components": [{"name": component, "type": "uint256"}]}]}])
    };
    let mixed: MonitorSpec = serde_json::from_value(json!({
        "networks": ["ethereum-mainnet"],
        "addresses": [{"address": USDC, "contractSpec": order("amount")}, {"address": WETH, "contractSpec": order("qty")}],
        "matchConditions": {"functions": [{"signature": "place((uint256))", "expression": "o.amount > 5"}]},
        "triggers": ["t"],
    }))
    .unwrap();
    let mixed = compile_evm("mixed", &mixed);
    assert!(
        mixed
            .warnings
            .iter()
            .any(|w| w.contains("does not apply to") && w.contains(WETH) && w.contains("amount")),
        "{:?}",
        mixed.warnings
    );
}
