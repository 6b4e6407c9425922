"""test_crud_pymongo.py: everyday CRUD through pymongo 3.11 (Debian's python3-pymongo)
against a real nedbd: round trips, cursors across getMore, write errors, provenance
accepted and refused, and persistence across a restart on the same data directory.
Expected results are MongoDB's documented behaviour. Run with /usr/bin/python3.
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import server as h  # noqa: E402

from bson.int64 import Int64  # noqa: E402
from pymongo import MongoClient, ReturnDocument  # noqa: E402
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure  # noqa: E402

dbpath = os.path.join(tempfile.mkdtemp(prefix="nedb-crud-py-"), "data")
state = {"srv": None, "client": None}


def start():
    state["srv"] = h.start_server(args=["--dbpath", dbpath])
    state["client"] = MongoClient(state["srv"].uri, serverSelectionTimeoutMS=3000)
    return state["client"]


def db():
    return state["client"]["crudpy"]


@h.before
def setup():
    start()


@h.after
def teardown():
    if state["client"] is not None:
        state["client"].close()
    if state["srv"] is not None and state["srv"].alive():
        state["srv"].stop()
    shutil.rmtree(os.path.dirname(dbpath), ignore_errors=True)


@h.test("insert_one/insert_many and find in insertion order")
def t_insert_find():
    c = db().items
    assert c.insert_one({"_id": 1, "k": "a", "n": 5}).inserted_id == 1
    assert c.insert_many([{"_id": 2, "k": "b", "n": 1}, {"_id": 3, "k": "a", "n": 9}]).inserted_ids == [2, 3]
    assert [d["_id"] for d in c.find()] == [1, 2, 3]
    assert [d["_id"] for d in c.find({"k": "a", "n": {"$gte": 6}})] == [3]
    assert c.find_one({"_id": 2}) == {"_id": 2, "k": "b", "n": 1}
    assert [d["n"] for d in c.find({}, {"_id": 0, "n": 1}).sort("n", -1).limit(2)] == [9, 5]


@h.test("duplicate _id raises DuplicateKeyError (11000)")
def t_dup():
    try:
        db().items.insert_one({"_id": 1})
    except DuplicateKeyError as e:
        assert e.code == 11000
    else:
        raise AssertionError("no error")


@h.test("unordered insert_many reports the failed index and inserts the rest")
def t_bulk():
    try:
        db().bulk.insert_many([{"_id": 1}, {"_id": 1}, {"_id": 2}], ordered=False)
    except BulkWriteError as e:
        assert e.details["nInserted"] == 2, e.details
        assert [w["index"] for w in e.details["writeErrors"]] == [1], e.details
    else:
        raise AssertionError("no error")


@h.test("update_one, update_many with upsert, replace_one, delete")
def t_update_delete():
    c = db().items
    r = c.update_one({"_id": 1}, {"$inc": {"n": 1}, "$set": {"tag": "x"}})
    assert (r.matched_count, r.modified_count) == (1, 1)
    assert c.find_one({"_id": 1}) == {"_id": 1, "k": "a", "n": 6, "tag": "x"}
    r = c.update_many({"k": "a"}, {"$set": {"seen": True}})
    assert (r.matched_count, r.modified_count) == (2, 2)
    r = c.update_one({"_id": 10}, {"$set": {"k": "z"}}, upsert=True)
    assert r.upserted_id == 10
    c.replace_one({"_id": 2}, {"k": "B"})
    assert c.find_one({"_id": 2}) == {"_id": 2, "k": "B"}
    assert c.delete_many({"k": "a"}).deleted_count == 2
    assert sorted(d["_id"] for d in c.find()) == [2, 10]


@h.test("find_one_and_update returns the document before or after")
def t_fam():
    c = db().fam
    c.insert_one({"_id": 1, "n": 1})
    assert c.find_one_and_update({"_id": 1}, {"$inc": {"n": 1}}) == {"_id": 1, "n": 1}
    after = c.find_one_and_update({"_id": 1}, {"$inc": {"n": 1}}, return_document=ReturnDocument.AFTER)
    assert after == {"_id": 1, "n": 3}
    assert c.find_one_and_delete({"_id": 1}) == {"_id": 1, "n": 3}
    assert c.find_one({"_id": 1}) is None


@h.test("a cursor iterates across getMore batches")
def t_cursor():
    c = db().many
    c.insert_many([{"_id": i, "sq": i * i} for i in range(500)])
    seen = [d["_id"] for d in c.find({}, batch_size=37)]
    assert seen == list(range(500))
    assert db().command("count", "many", query={"sq": {"$lt": 100}})["n"] == 10
    assert sorted(c.distinct("sq", {"_id": {"$lt": 4}})) == [0, 1, 4, 9]


@h.test("provenance: accepted and sealed, refused with code 2 and nothing written")
def t_prov():
    c = db().prov
    r = db().command("insert", "prov", documents=[{"_id": "src", "_evidence": "tool_result"}])
    src_seq = r["seqs"][0]
    c.insert_one({"_id": "out", "_caused_by": [Int64(src_seq)], "_confidence": 0.25})
    assert c.find_one({"_id": "out"})["_caused_by"] == [src_seq]
    r = db().command("insert", "prov", documents=[{"_id": "bad", "_confidence": -0.1}])
    assert r["n"] == 0 and r["writeErrors"][0]["code"] == 2
    assert "_confidence" in r["writeErrors"][0]["errmsg"]
    assert c.find_one({"_id": "bad"}) is None


@h.test("unknown cursor id is CursorNotFound (43)")
def t_cursor_not_found():
    try:
        db().command("getMore", Int64(42), collection="many")
    except OperationFailure as e:
        assert e.code == 43
    else:
        raise AssertionError("no error")


@h.test("everything acknowledged is there after a restart")
def t_restart():
    state["client"].close()
    state["srv"].stop()
    start()
    assert db().items.find_one({"_id": 10}) == {"_id": 10, "k": "z"}
    assert db().command("count", "many")["n"] == 500
    v = state["client"].admin.command("nedbVerify")
    assert v["valid"] is True and v["records"] > 500


h.run()
