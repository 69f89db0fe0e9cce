"""bench/aws_cost.py: DynamoDB item sizes and request units, and the bill, against sums done by hand."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import aws_cost
from bench.aws_cost import bill, dynamodb_call_units, item_size, lambda_use, read_units, write_units

PRICES = {"region": "us-east-1", "read_on": "2026-12-07",
          "dynamodb_on_demand": {"write_request_unit_per_million": 0.625, "read_request_unit_per_million": 0.125},
          "lambda_arm64": {"request_per_million": 0.20, "gb_second": 0.0000133334},
          "msk_serverless": {"data_in_per_gb": 0.10, "data_out_per_gb": 0.05},
          "kms": {"request_per_10k": 0.03}, "api_gateway_rest": {"request_per_million": 3.50}}


def test_item_size_follows_dynamodbs_rules():
    # names 2+2+1+1+1+1+1 = 9; "pay_1" 5, "abc" 3; N 12345 -> ceil(5/2)+1 = 4; B 10; BOOL 1;
    # M {"k": S "v"}: 3 + (1 + 1 + 1) = 6; L [N 7, S "xy"]: 3 + (2 + 1) + (2 + 1) = 9
    item = {"pk": {"S": "pay_1"}, "sk": {"S": "abc"}, "n": {"N": "12345"}, "b": {"B": b"0123456789"},
            "t": {"BOOL": True}, "m": {"M": {"k": {"S": "v"}}}, "l": {"L": [{"N": "7"}, {"S": "xy"}]}}
    assert item_size(item) == 9 + 5 + 3 + 4 + 10 + 1 + 6 + 9
    assert item_size({"é": {"S": "€"}}) == 2 + 3  # UTF-8 bytes, not characters


def test_units_round_up_per_kb_and_per_4kb():
    assert [write_units(s) for s in (1, 1024, 1025, 3000)] == [1, 1, 2, 3]
    assert write_units(1025, transactional=True) == 4
    assert read_units(0, consistent=True) == 1 and read_units(4097, consistent=True) == 2
    assert read_units(100, consistent=False) == 0.5 and read_units(100, True, transactional=True) == 2


def test_calls_are_sized_from_their_items_and_updates_from_the_last_write():
    aws_cost.SIZES.by_key.clear()
    big = {"pk": {"S": "t#p1"}, "sk": {"S": "payment"}, "body": {"S": "x" * 1500},
           "gsi1pk": {"S": "t#status#settled"}, "gsi1sk": {"S": "p1"}}
    size = item_size(big)  # 2+4 + 2+7 + 4+1500 + 6+16 + 6+2 = 1549: two units, and two in the GSI
    assert size == 1549
    assert dynamodb_call_units("PutItem", {"Item": big}, {}) == {"write": 2, "gsi_write": 2, "written_bytes": 1549}
    # An update carries no item: sized as the item last written under its key (still in the GSI)
    update = {"Key": {"pk": {"S": "t#p1"}, "sk": {"S": "payment"}}, "ExpressionAttributeValues": {":v": {"N": "1"}}}
    assert dynamodb_call_units("UpdateItem", update, {})["write"] == 2
    # In a transaction every write counts twice; a condition check writes nothing to the index
    tx = {"TransactItems": [{"Put": {"Item": {"pk": {"S": "a"}, "sk": {"S": "b"}}}},
                            {"ConditionCheck": {"Key": {"pk": {"S": "t#p1"}, "sk": {"S": "payment"}}}}]}
    assert dynamodb_call_units("TransactWriteItems", tx, {}) == {"write": 2 + 4, "gsi_write": 0,
                                                                 "written_bytes": item_size({"pk": {"S": "a"},
                                                                                             "sk": {"S": "b"}})}
    # Reads are sized from what came back: a query's page together, a batch get item by item
    items = [{"pk": {"S": "k"}, "v": {"S": "y" * 3000}}] * 2
    assert dynamodb_call_units("Query", {"ConsistentRead": True}, {"Items": items})["read"] == 2  # 6 KB -> 2
    got = dynamodb_call_units("BatchGetItem", {"RequestItems": {"t": {"ConsistentRead": True}}},
                              {"Responses": {"t": items}})
    assert got["read"] == 2  # 1 + 1
    assert dynamodb_call_units("GetItem", {}, {})["read"] == 0.5  # nothing found still costs a read
    assert dynamodb_call_units("GetRecords", {}, {}) == {}


def test_lambda_use_is_invocations_and_billed_ms_per_payment():
    stages = {"risk": {"records": 100, "mean_batch": 10.0, "processing_ms_per_record": 2.45}}
    # 10 invocations for 100 payments -> 0.1 each; 24.5 ms per invocation billed as 25 ms
    assert lambda_use(stages, 100, 7.2) == {"risk": {"invocations": 0.1, "billed_ms_each": 25},
                                            "api": {"invocations": 1.0, "billed_ms_each": 8}}


def test_bill_by_hand():
    per_payment = {"dynamodb": {"write": 20, "gsi_write": 2, "read": 10},
                   "lambda": {"api": {"invocations": 1.0, "billed_ms_each": 8},
                              "risk": {"invocations": 0.1, "billed_ms_each": 25}},
                   "msk": {"bytes_in": 2**30 / 1e6, "bytes_out": 2 * 2**30 / 1e6},  # 1 GB in, 2 GB out per million
                   "kms_requests": 0.01, "api_requests": 1}
    b = bill(per_payment, PRICES, memory_mb=512)
    assert b["dynamodb"] == pytest.approx(22 * 0.625 + 10 * 0.125)          # 15.0
    gb_s = (1.0 * 0.008 + 0.1 * 0.025) * 0.5                                  # 0.00525 per payment
    assert b["lambda"] == pytest.approx(round(1.1 * 0.20 + gb_s * 1e6 * 0.0000133334, 2))  # 0.22 + 0.07
    assert b["msk"] == pytest.approx(0.10 + 2 * 0.05)
    assert b["kms"] == pytest.approx(0.01 * 100 * 0.03)
    assert b["api_gateway"] == 3.5
    assert b["lambda"] == 0.29
    assert b["total"] == pytest.approx(15.0 + 0.29 + 0.2 + 0.03 + 3.5, abs=0.01)


def test_memory_and_prices_come_from_one_place_each():
    cfg = json.loads((Path(aws_cost.ROOT) / "infra" / "config.json").read_text())
    assert aws_cost.lambda_memory_mb() == cfg["lambda"]["memory_mb"]
    prices = aws_cost.load_prices()
    for section in ("dynamodb_on_demand", "lambda_arm64", "msk_serverless", "kms", "api_gateway_rest"):
        assert prices[section]["source"].startswith("https://aws.amazon.com/")
        assert isinstance(prices[section]["verified"], bool) and prices[section]["how_read"]
    assert prices["region"] and prices["read_on"]


def test_item_kind_names_what_a_call_touches():
    from bench.aws_cost import item_kind
    assert item_kind({"Item": {"pk": {"S": "_outbox#3"}, "sk": {"S": "0001"}}}) == "_outbox"
    assert item_kind({"Key": {"pk": {"S": "ten_1#pay_9"}, "sk": {"S": "tl#2#0"}}}) == "tl"
    assert item_kind({"Key": {"pk": {"S": "ten_1#balance"}, "sk": {"S": "fees#EUR"}}}) == "balance"
    assert item_kind({"Key": {"pk": {"S": "ten_1#cus#c1"}, "sk": {"S": "2026#pay_9"}}}) == "cus"
    assert item_kind({"ExpressionAttributeValues": {":pk": {"S": "ten_1#cus#c1"}}}) == "query cus"
    assert item_kind({"ExpressionAttributeValues": {":pk": {"S": "_outbox#2"}}}) == "_outbox"
    assert item_kind({"RequestItems": {}}) is None
    from bench.aws_cost import item_kinds
    tx = {"TransactItems": [{"Put": {"Item": {"pk": {"S": "ten_1#pay_9"}, "sk": {"S": "payment"}}}},
                            {"Delete": {"Key": {"pk": {"S": "_proc#risk#e1"}, "sk": {"S": "-"}}}}]}
    assert item_kinds("TransactWriteItems", tx) == ["TransactWriteItems Put payment",
                                                    "TransactWriteItems Delete _proc"]
    assert item_kinds("GetItem", {"Key": {"pk": {"S": "_apikey#h"}, "sk": {"S": "-"}}}) == ["GetItem _apikey"]
