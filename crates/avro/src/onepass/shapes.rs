//! The one-pass encoder against the tree path for every schema shape it handles differently: unions,
//! records (key order, duplicates, unknown keys, defaults), arrays, maps, decimals, logical types.

use super::tests::{agree, check, detail, field_schema, schema, values};

#[test]
fn unions_choose_the_same_branch() {
    let point = r#"{"type":"record","name":"P","fields":[{"name":"x","type":"int"}]}"#;
    let other = r#"{"type":"record","name":"Q","fields":[{"name":"y","type":"string"},{"name":"x","type":"int","default":0}]}"#;
    let all: &[&str] = &[
        "null",
        "1",
        "-1",
        "1.5",
        "\"s\"",
        "true",
        "[]",
        "[1]",
        "{}",
        "{\"x\":1}",
        "{\"y\":\"a\"}",
        "{\"x\":\"1\"}",
        "{\"int\":4}",
        "{\"int\":\"4\"}",
        "{\"string\":\"s\"}",
        "{\"long\":5}",
        "{\"null\":null}",
        "{\"t.P\":{\"x\":1}}",
        "{\"P\":{\"x\":1}}",
        "{\"P\":{\"x\":\"no\"}}",
        "{\"Q\":{\"y\":\"a\"}}",
        "{\"P\":{\"x\":1},\"z\":1}",
        "{\"int\":1,\"int\":2}",
        "{\"x\":1,\"x\":\"bad\"}",
        "{\"y\":\"a\",\"x\":2}",
        "{\"map\":{}}",
        "{\"array\":[1]}",
        "{\"a\":1,\"b\":2}",
        "\"NaN\"",
        "{\"x\":1,\"y\":\"b\"}",
    ];
    for ty in [
        format!(r#"["null", "int", "string", {point}]"#),
        r#"["int", "null"]"#.to_string(),
        r#"["string", "null"]"#.to_string(),
        r#"["int", "string"]"#.to_string(),
        r#"["string", "int"]"#.to_string(),
        r#"["float", "int"]"#.to_string(),
        r#"["int", "long", "double"]"#.to_string(),
        r#"["null", {"type":"enum","name":"E","symbols":["s","A"]}, "string"]"#.to_string(),
        format!(r#"["null", {point}, {other}]"#),
        format!(r#"[{other}, {point}, "null"]"#),
        format!(r#"["null", {point}, {{"type":"map","values":"int"}}]"#),
        r#"["null", {"type":"map","values":"int"}]"#.to_string(),
        r#"["null", {"type":"array","items":"int"}]"#.to_string(),
        r#"["null", {"type":"long","logicalType":"timestamp-millis"}, "string"]"#.to_string(),
        r#"["null", {"type":"fixed","name":"Dur","size":12,"logicalType":"duration"}]"#.to_string(),
        r#"["null", "string", {"type":"bytes","logicalType":"decimal","precision":4,"scale":1}]"#.to_string(),
        format!(r#"["null", {point}]"#),
        format!(r#"[{point}, "null"]"#),
    ] {
        values(&ty, all);
    }
}

#[test]
fn records_keys_in_any_order_duplicates_unknowns_and_defaults() {
    let s = schema(
        r#"{"type":"record","name":"R","namespace":"t","fields":[
        {"name":"a","type":"int"},
        {"name":"b","type":"string","default":"B","aliases":["bee"]},
        {"name":"c","type":{"type":"record","name":"C","fields":[{"name":"x","type":"int","default":1},{"name":"y","type":["null","string"],"default":null}]},"default":{"x":5}},
        {"name":"d","type":["null","int"],"default":null},
        {"name":"e","type":"long"},
        {"name":"f","type":{"type":"enum","name":"En","symbols":["X","Y"],"default":"X"},"default":"Y"}]}"#,
    );
    for p in [
        r#"{"a":1,"b":"x","c":{"x":2,"y":"s"},"d":3,"e":4,"f":"X"}"#,
        r#"{"a":1,"e":4}"#,
        r#"{"e":4,"a":1}"#,
        r#"{"a":1,"e":4,"b":"late"}"#,
        r#"{"f":"X","e":4,"d":null,"c":{},"b":"x","a":1}"#,
        r#"{"a":1,"a":2,"e":4}"#,
        r#"{"a":"bad","a":2,"e":4}"#,
        r#"{"a":2,"a":"bad","e":4}"#,
        r#"{"a":1,"e":"bad","b":5}"#,
        r#"{"b":5,"e":"bad"}"#,
        r#"{"e":"bad"}"#,
        r#"{"a":1}"#,
        r#"{"a":1,"e":4,"zz":1,"yy":2,"Aa":3}"#,
        r#"{"a":"bad","e":4,"zz":1}"#,
        r#"{"a":1,"e":4,"bee":"alias"}"#,
        r#"{"a":1,"e":4,"c":{"x":1,"q":1}}"#,
        r#"{"a":1,"e":4,"c":{"y":"a","x":"no"}}"#,
        r#"{"a":1,"e":4,"c":null}"#,
        r#"{}"#,
        r#"[]"#,
        r#"{"a":1,"e":4,"d":{"int":5}}"#,
        r#"{"a":1,"e":4,"d":{"int":5},"d":null}"#,
        r#"{"a":1,"e":4,"f":"Z"}"#,
    ] {
        check(&s, p.as_bytes());
    }
    let r = agree(&s, br#"{"a":1,"e":4,"zz":1,"yy":2}"#);
    assert!(detail(r).contains("$.yy: unknown field"));
    assert!(
        agree(&s, br#"{"a":"bad","a":2,"e":4}"#).is_ok(),
        "the last duplicate wins"
    );
}

#[test]
fn defaults_that_do_not_fit_and_recursive_types() {
    let s = schema(
        r#"{"type":"record","name":"R","fields":[
        {"name":"a","type":"bytes","default":"\u20ac"},
        {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"},"default":5},
        {"name":"m","type":{"type":"map","values":"int"},"default":{"b":2,"a":1}},
        {"name":"l","type":{"type":"array","items":"int"},"default":[1,2,3]},
        {"name":"n","type":{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]},"default":{"v":1,"next":{"v":2}}}]}"#,
    );
    for p in [
        r#"{}"#,
        r#"{"a":1}"#,
        r#"{"a":1,"n":{"v":3,"next":{"v":4,"next":null}}}"#,
        r#"{"a":1,"n":{"v":3,"next":{"v":"x"}}}"#,
        r#"{"a":1,"n":{"v":3,"next":{"Node":{"v":5}}}}"#,
    ] {
        check(&s, p.as_bytes());
    }
}

#[test]
fn arrays_and_maps() {
    let item = r#"{"type":"record","name":"I","fields":[{"name":"sku","type":"string"},{"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}}]}"#;
    let s = field_schema(&format!(r#"{{"type":"array","items":{item}}}"#));
    let many: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"sku":"s{i}","price":"{i}.5"}}"#))
        .collect();
    for p in [
        "[]".to_string(),
        format!("[{}]", many[..63].join(",")),
        format!("[{}]", many[..64].join(",")),
        format!("[{}]", many.join(",")),
        r#"[{"sku":"a","price":"1"},{"sku":"b","price":1},{"sku":"c","price":"1.234"}]"#.to_string(),
        r#"[{"sku":"a","price":"1"},{"sku":"b","price":1},{"price":"1.234"}]"#.to_string(),
    ] {
        check(&s, format!(r#"{{"v": {p}}}"#).as_bytes());
    }
    let r = agree(
        &s,
        br#"{"v": [{"sku":"a","price":"1"},{"sku":"b","price":1},{"sku":"c","price":"1.234"}]}"#,
    );
    assert!(detail(r).contains("$.v[2].price: \"1.234\" has more than 2 fraction digits"));
    let entries: Vec<String> = (0..100).rev().map(|i| format!(r#""k{i}":{i}"#)).collect();
    values(
        r#"{"type":"map","values":"long"}"#,
        &[
            "{}",
            r#"{"a":1}"#,
            r#"{"a":1,"b":2}"#,
            r#"{"b":2,"a":1}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":"x","a":2}"#,
            r#"{"a":2,"a":"x"}"#,
            r#"{"b":"x","a":"y"}"#,
            r#"{"a key":"x"}"#,
            r#"{"":1}"#,
            r#"{"\u00e9":1,"e":2}"#,
            &format!("{{{}}}", entries.join(",")),
            &format!("{{{}}}", entries[..40].join(",")),
        ],
    );
    values(
        r#"{"type":"map","values":{"type":"array","items":"int"}}"#,
        &[r#"{"b":[1,2],"a":[],"c":[3]}"#, r#"{"b":[1,"x"],"a":[null]}"#],
    );
}

#[test]
fn decimals_text_and_number_bytes_and_fixed() {
    let inputs: &[&str] = &[
        "\"12.34\"",
        "12.34",
        "-1",
        "\"-0\"",
        "\"-0.00\"",
        "0",
        "\"1.234\"",
        "\"1.230\"",
        "true",
        "1e2",
        "\"1e2\"",
        "\"1.5E-1\"",
        "12345678901234567.89",
        "\"12345678901234567.89\"",
        "0.000000000000001",
        "\"999999.99\"",
        "\"-999999.99\"",
        "\"1000000\"",
        "\"+5\"",
        "\" 5 \"",
        "\"\"",
        "\".\"",
        "\"1e99999\"",
        "\"abc\"",
        "-128",
        "\"-1.28\"",
        "\"1.28\"",
        "123456789012345678",
        "-9223372036854775809",
        "18446744073709551615",
    ];
    values(
        r#"{"type":"bytes","logicalType":"decimal","precision":8,"scale":2}"#,
        inputs,
    );
    values(
        r#"{"type":"bytes","logicalType":"decimal","precision":30,"scale":2}"#,
        inputs,
    );
    values(
        r#"{"type":"fixed","name":"D","size":2,"logicalType":"decimal","precision":4,"scale":1}"#,
        inputs,
    );
    values(
        r#"{"type":"fixed","name":"D1","size":1,"logicalType":"decimal","precision":4,"scale":0}"#,
        &["\"127\"", "\"128\"", "\"-128\"", "\"-129\"", "\"300\""],
    );
    values(
        r#"{"type":"bytes","logicalType":"big-decimal"}"#,
        &["\"1.50\"", "\"x\"", "1.5", "10", "true", "\"-0\""],
    );
}

#[test]
fn logical_types_from_text_and_numbers() {
    let uuid = r#""67e55044-10b1-426f-9247-bb680e5fe0c8""#;
    let uuids = [
        uuid,
        r#""67E55044-10B1-426F-9247-BB680E5FE0C8""#,
        r#""67e5504410b1426f9247bb680e5fe0c8""#,
        r#""{67e55044-10b1-426f-9247-bb680e5fe0c8}""#,
        r#""urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8""#,
        r#""nope""#,
        "1",
        "null",
    ];
    values(r#"{"type":"string","logicalType":"uuid"}"#, &uuids);
    values(r#"{"type":"bytes","logicalType":"uuid"}"#, &uuids);
    values(
        r#"{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}"#,
        &uuids,
    );
    let times: &[&str] = &[
        "\"2024-02-29\"",
        "\"2024-02-30\"",
        "3",
        "-3",
        "3.5",
        "\"01:00:00.250\"",
        "\"23:59:59.999999999\"",
        "5",
        "86400000",
        "86399999",
        "-1",
        "\"2024-05-01T12:00:00.123456Z\"",
        "\"2024-05-01T14:00:00+02:00\"",
        "\"2024-05-01 07:00:00.123-05\"",
        "\"2024-05-01T12:00:00\"",
        "\"2024-05-01T12:00:00.5\"",
        "\"9999-12-31T23:59:59Z\"",
        "\"0000-01-01T00:00:00Z\"",
        "42",
        "1.5",
        "true",
        "null",
        "{}",
        "\"x\"",
        "9223372036854775807",
        "\"2262-04-12T00:00:00Z\"",
    ];
    for l in [
        r#"{"type":"int","logicalType":"date"}"#,
        r#"{"type":"int","logicalType":"time-millis"}"#,
        r#"{"type":"long","logicalType":"time-micros"}"#,
        r#"{"type":"long","logicalType":"timestamp-millis"}"#,
        r#"{"type":"long","logicalType":"timestamp-micros"}"#,
        r#"{"type":"long","logicalType":"timestamp-nanos"}"#,
        r#"{"type":"long","logicalType":"local-timestamp-millis"}"#,
        r#"{"type":"long","logicalType":"local-timestamp-micros"}"#,
        r#"{"type":"long","logicalType":"local-timestamp-nanos"}"#,
    ] {
        values(l, times);
    }
    values(
        r#"{"type":"fixed","name":"Dur","size":12,"logicalType":"duration"}"#,
        &[
            r#"{"months":1,"days":2,"millis":3}"#,
            r#"{}"#,
            r#"{"days":-1}"#,
            r#"{"weeks":1}"#,
            r#"{"weeks":1,"days":-1}"#,
            r#"{"days":4294967295}"#,
            r#"{"days":4294967296}"#,
            r#"{"days":1,"days":"x"}"#,
            r#"{"days":"x","days":1}"#,
            r#"{"b":1,"a":[1]}"#,
            r#"{"millis":1.0}"#,
            r#"{"months":[1],"days":{}}"#,
            "1",
        ],
    );
}
