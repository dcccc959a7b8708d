// IDL used by txthrift's own test-suite. Generated code lives beside it (see scripts/regen.sh).
namespace py txthrift_test

exception Oops {
  1: string why
  2: i32 code
}

exception Denied {
  1: string who
}

struct Item {
  1: required i32 id
  2: optional string name
  3: list<i64> values
  4: map<string, i32> counts
}

service Base {
  i32 ping(1: i32 x)
}

service Echo extends Base {
  void sayHello()
  string getData(1: string input)
  string echo(2: string text, 1: i32 repeat)
  Item item(1: Item it)
  i32 add(1: i32 a, 2: i32 b)
  string fail(1: string kind) throws (1: Oops oops, 2: Denied denied)
  string slow(1: double seconds, 2: string tag)
  binary blob(1: i32 size)
  oneway void fire(1: string message)
}

service Calc {
  i64 multiply(1: i64 a, 2: i64 b)
}
