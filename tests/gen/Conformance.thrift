// Conformance IDL: every part of the Thrift type system, for tests/test_conformance.py.
// Generated code lives beside it (see scripts/regen.sh); thriftpy2 loads this file as is.
namespace py txthrift_conformance

// ---- typedefs and constants -------------------------------------------------------------

typedef i64 Timestamp
typedef binary Blob
typedef list<string> Names
typedef map<string, list<set<i32>>> Index

enum Color {
  RED = 1,
  GREEN = 2,
  BLUE = 4,
  NEGATIVE = -3
}

const i32 ANSWER = 42
const i64 BIG = 9223372036854775807
const double RATIO = 0.25
const string GREETING = "grüße ☃"
const list<i16> PRIMES = [2, 3, 5, 7]
const set<string> WORDS = ["alpha", "beta"]
const map<string, i32> WEIGHTS = {"light": 1, "heavy": 100}
const Color FAVOURITE = Color.BLUE

// ---- structs ------------------------------------------------------------------------------

// One field of each base type.
struct Primitives {
  1: bool aBool
  2: byte aByte
  3: i16 anI16
  4: i32 anI32
  5: i64 anI64
  6: double aDouble
  7: string aString
  8: binary aBinary
}

// A list, a set and a map of each base type, and containers of containers.
struct Containers {
  1: list<bool> bools
  2: list<byte> bytes_
  3: list<i16> i16s
  4: list<i32> i32s
  5: list<i64> i64s
  6: list<double> doubles
  7: list<string> strings
  8: list<binary> binaries
  9: set<bool> boolSet
  10: set<byte> byteSet
  11: set<i16> i16Set
  12: set<i32> i32Set
  13: set<i64> i64Set
  14: set<double> doubleSet
  15: set<string> stringSet
  16: set<binary> binarySet
  17: map<bool, byte> boolMap
  18: map<byte, i16> byteMap
  19: map<i16, i32> i16Map
  20: map<i32, i64> i32Map
  21: map<i64, double> i64Map
  22: map<double, string> doubleMap
  23: map<string, binary> stringMap
  24: map<binary, bool> binaryMap
  25: Index index
  26: list<list<list<i32>>> cube
  27: list<map<i16, string>> tables
  28: map<i32, map<string, Primitives>> deepMap
  29: list<Primitives> structs
  30: list<Color> colors
  31: set<Color> colorSet
  32: map<Color, Color> colorMap
  33: map<string, set<string>> groups
  34: list<set<i64>> setList
  35: list<string> emptyList
  36: set<i32> emptySet
  37: map<string, i32> emptyMap
}

// Required, optional and default-valued fields.
struct Defaults {
  1: required i32 id
  2: optional string note
  3: i32 count = 7
  4: string label = "défaut"
  5: list<i32> numbers = [1, 2, 3]
  6: Color color = Color.GREEN
  7: optional i64 limit = 99
  8: double ratio = 0.5
  9: bool enabled = true
  10: map<string, string> tags = {"k": "v"}
  11: set<i16> small = [1, 2]
  12: optional Primitives extra
  13: required string name
}

// Recursion through a container.
struct Node {
  1: i32 value
  2: list<Node> children
  3: map<string, Node> named
}

// A struct holding structs holding structs.
struct Inner {
  1: string tag
  2: Primitives prims
}

struct Middle {
  1: Inner inner
  2: list<Inner> inners
  3: optional Inner maybe
}

struct Outer {
  1: Middle middle
  2: map<string, Middle> middles
  3: Node tree
}

union Choice {
  1: i32 number
  2: string text
  3: Primitives prims
  4: list<string> names
  5: binary raw
}

// Everything at once, with the typedefs, an enum field and a union field.
struct Everything {
  1: Primitives prims
  2: Containers containers
  3: Defaults defaults
  4: Outer outer
  5: Choice choice
  6: Color color
  7: Timestamp stamp
  8: Blob blob
  9: Names names
  10: list<Choice> choices
}

// What manyArgs received, field for field.
struct Arguments {
  1: bool a
  2: byte b
  3: i16 c
  4: i32 d
  5: i64 e
  6: double f
  7: string g
  8: binary h
  9: Color i
  10: list<i32> j
  11: set<string> k
  12: map<i32, string> l
  13: Primitives m
  14: Choice n
  15: Timestamp o
}

// ---- exceptions ---------------------------------------------------------------------------

exception NotFound {
  1: string key
}

exception Invalid {
  1: string reason
  2: i32 code
  3: list<string> fields
}

exception Overloaded {
  1: double retryAfter
  2: Primitives load
}

// ---- services -----------------------------------------------------------------------------

service Base {
  string version()
  i64 add(1: i64 a, 2: i64 b)
}

service Conformance extends Base {
  void nothing()
  oneway void notify(1: string tag)
  list<string> notified()

  bool echoBool(1: bool v)
  byte echoByte(1: byte v)
  i16 echoI16(1: i16 v)
  i32 echoI32(1: i32 v)
  i64 echoI64(1: i64 v)
  double echoDouble(1: double v)
  string echoString(1: string v)
  binary echoBinary(1: binary v)
  Color echoColor(1: Color v)
  Timestamp echoTimestamp(1: Timestamp v)
  Blob echoBlob(1: Blob v)
  Names echoNames(1: Names v)
  Index echoIndex(1: Index v)
  list<double> echoDoubles(1: list<double> v)

  Primitives echoPrimitives(1: Primitives v)
  Containers echoContainers(1: Containers v)
  Defaults echoDefaults(1: Defaults v)
  Defaults makeDefaults(1: i32 id, 2: string name)
  Node echoNode(1: Node v)
  Outer echoOuter(1: Outer v)
  Choice echoChoice(1: Choice v)
  Everything echoEverything(1: Everything v)

  Arguments manyArgs(1: bool a, 2: byte b, 3: i16 c, 4: i32 d, 5: i64 e, 6: double f,
                     7: string g, 8: binary h, 9: Color i, 10: list<i32> j, 11: set<string> k,
                     12: map<i32, string> l, 13: Primitives m, 14: Choice n, 15: Timestamp o)

  // which: 0 answers, 1 NotFound, 2 Invalid, 3 Overloaded, anything else an undeclared error.
  i32 raises(1: i32 which) throws (1: NotFound notFound, 2: Invalid invalid,
                                   3: Overloaded overloaded)
  void raisesVoid(1: i32 which) throws (1: NotFound notFound, 2: Invalid invalid)
}

// A second service, multiplexed beside the first.
service Second {
  string whoami()
  i64 multiply(1: i64 a, 2: i64 b)
}
