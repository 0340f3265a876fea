package resp

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
)

// The Append functions add the encoding to dst and return the extended
// slice. They allocate only when dst lacks capacity.

// AppendArrayLen appends an array header "*<n>\r\n".
func AppendArrayLen(dst []byte, n int) []byte {
	return appendHeader(dst, '*', int64(n))
}

// AppendBulk appends b as a bulk string.
func AppendBulk(dst []byte, b []byte) []byte {
	dst = appendHeader(dst, '$', int64(len(b)))
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendBulkString appends s as a bulk string.
func AppendBulkString(dst []byte, s string) []byte {
	dst = appendHeader(dst, '$', int64(len(s)))
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendBulkInt appends the decimal text of i as a bulk string.
func AppendBulkInt(dst []byte, i int64) []byte {
	var tmp [20]byte
	return AppendBulk(dst, strconv.AppendInt(tmp[:0], i, 10))
}

// AppendBulkUint appends the decimal text of u as a bulk string.
func AppendBulkUint(dst []byte, u uint64) []byte {
	var tmp [20]byte
	return AppendBulk(dst, strconv.AppendUint(tmp[:0], u, 10))
}

// AppendBulkFloat appends f as a bulk string holding the shortest decimal
// that parses back to f, without an exponent, since that is what Redis
// commands such as INCRBYFLOAT accept. Infinities are "inf" and "-inf",
// NaN is "nan".
func AppendBulkFloat(dst []byte, f float64) []byte {
	return appendBulkFloat(dst, f, 64)
}

func appendBulkFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(dst, "$3\r\ninf\r\n"...)
	case math.IsInf(f, -1):
		return append(dst, "$4\r\n-inf\r\n"...)
	case math.IsNaN(f):
		return append(dst, "$3\r\nnan\r\n"...)
	}
	// The longest 'f' form of a float64 is the smallest subnormal:
	// "-0." then 323 zeros and a 5, 327 bytes.
	var tmp [328]byte
	return AppendBulk(dst, strconv.AppendFloat(tmp[:0], f, 'f', -1, bits))
}

// AppendBulkBool appends "1" or "0" as a bulk string.
func AppendBulkBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, "$1\r\n1\r\n"...)
	}
	return append(dst, "$1\r\n0\r\n"...)
}

// AppendArg encodes one command argument as a bulk string: a value of a
// built-in type as AppendBuiltin does, anything else as AppendMarshaled
// does. On error dst is returned unchanged.
func AppendArg(dst []byte, arg any) ([]byte, error) {
	if b, ok := AppendBuiltin(dst, arg); ok {
		return b, nil
	}
	return AppendMarshaled(dst, arg)
}

// AppendBuiltin encodes arg as a bulk string if it is a string, []byte,
// int, int8 to int64, uint, uint8 to uint64, float32, float64 or bool, and
// reports whether it was. For any other type it returns dst unchanged and
// false. Named types such as `type ID int64` are not unwrapped, which would
// need reflection; they are encoded by their methods if they have any (see
// AppendMarshaled).
//
// arg does not escape here, as nothing calls a method of it.
func AppendBuiltin(dst []byte, arg any) ([]byte, bool) {
	switch a := arg.(type) {
	case string:
		return AppendBulkString(dst, a), true
	case []byte:
		return AppendBulk(dst, a), true
	case int:
		return AppendBulkInt(dst, int64(a)), true
	case int64:
		return AppendBulkInt(dst, a), true
	case int32:
		return AppendBulkInt(dst, int64(a)), true
	case int16:
		return AppendBulkInt(dst, int64(a)), true
	case int8:
		return AppendBulkInt(dst, int64(a)), true
	case uint:
		return AppendBulkUint(dst, uint64(a)), true
	case uint64:
		return AppendBulkUint(dst, a), true
	case uint32:
		return AppendBulkUint(dst, uint64(a)), true
	case uint16:
		return AppendBulkUint(dst, uint64(a)), true
	case uint8:
		return AppendBulkUint(dst, uint64(a)), true
	case float64:
		return appendBulkFloat(dst, a, 64), true
	case float32:
		// Formatting at 32 bits keeps float32(0.1) as "0.1" rather than
		// the float64 expansion of its binary value.
		return appendBulkFloat(dst, float64(a), 32), true
	case bool:
		return AppendBulkBool(dst, a), true
	}
	return dst, false
}

// AppendMarshaled encodes, as a bulk string, an argument of a type
// AppendBuiltin does not take:
//
//   - time.Time (or a non-nil *time.Time) as RFC 3339 text with
//     nanoseconds, time.RFC3339Nano, rather than by its methods: its binary
//     form is opaque;
//   - a value with a method MarshalBinary (encoding.BinaryMarshaler),
//     MarshalText (encoding.TextMarshaler) or String (fmt.Stringer) by the
//     first of them it has, in that order.
//
// It refuses with an *ArgError, leaving dst unchanged, nil, a
// time.Duration (its String form, "1.5s", is not what any command takes),
// a nil pointer (a method called through it could panic), a marshaler
// that fails (Err holds its error) and any other type.
//
// Calling a method of arg makes arg escape, so a caller passing a value
// boxed in an any for the call, rather than a constant, has it allocated
// on the heap; callers that can settle built-in types first should (see
// AppendBuiltin).
func AppendMarshaled(dst []byte, arg any) ([]byte, error) {
	switch a := arg.(type) {
	case nil:
		return dst, &ArgError{Type: "nil"}
	case time.Time:
		return appendTime(dst, a), nil
	case *time.Time:
		if a == nil {
			return dst, &ArgError{Type: "*time.Time", Why: whyNilPointer}
		}
		return appendTime(dst, *a), nil
	case time.Duration, *time.Duration:
		return dst, &ArgError{Type: reflect.TypeOf(arg).String(), Why: "Redis takes a number of seconds or milliseconds, as the command says, not a duration such as \"1.5s\"; pass d.Milliseconds() or d.Seconds()"}
	case encoding.BinaryMarshaler, encoding.TextMarshaler, fmt.Stringer:
		// A method of T reached through a nil *T panics, and one of *T
		// might.
		if v := reflect.ValueOf(arg); v.Kind() == reflect.Pointer && v.IsNil() {
			return dst, &ArgError{Type: v.Type().String(), Why: whyNilPointer}
		}
	default:
		return dst, &ArgError{Type: reflect.TypeOf(arg).String()}
	}
	var (
		b      []byte
		err    error
		method string
	)
	switch a := arg.(type) {
	case encoding.BinaryMarshaler:
		b, err = a.MarshalBinary()
		method = "MarshalBinary"
	case encoding.TextMarshaler:
		b, err = a.MarshalText()
		method = "MarshalText"
	case fmt.Stringer:
		return AppendBulkString(dst, a.String()), nil
	}
	if err != nil {
		return dst, &ArgError{Type: reflect.TypeOf(arg).String(), Method: method, Err: err}
	}
	return AppendBulk(dst, b), nil
}

const whyNilPointer = "it is a nil pointer"

func appendTime(dst []byte, t time.Time) []byte {
	var tmp [64]byte
	return AppendBulk(dst, t.AppendFormat(tmp[:0], time.RFC3339Nano))
}

// AppendValue encodes v in RESP3, attributes first. It is meant for test
// servers and round-trip checks, so it trusts v: a SimpleString, Error or
// BigNumber must not contain CR or LF. A Verbatim format that is not three
// bytes is written as "txt"; a Map with an odd number of Elems gets a null
// for the missing last value; a Kind that is not a RESP3 value type
// (including Attribute) is written as null.
func AppendValue(dst []byte, v Value) []byte {
	if attrs := v.Attrs(); attrs != nil {
		dst = appendPairs(dst, '|', attrs, AppendValue)
	}
	switch v.Kind {
	case SimpleString, Error, BigNumber:
		return appendLine(dst, byte(v.Kind), v.Str)
	case Integer:
		return appendHeader(dst, ':', v.Int)
	case BulkString, BulkError:
		dst = appendHeader(dst, byte(v.Kind), int64(len(v.Str)))
		dst = append(dst, v.Str...)
		return append(dst, '\r', '\n')
	case Verbatim:
		format := v.Format()
		if len(format) != 3 {
			format = "txt"
		}
		dst = appendHeader(dst, '=', int64(len(v.Str)+4))
		dst = append(dst, format...)
		dst = append(dst, ':')
		dst = append(dst, v.Str...)
		return append(dst, '\r', '\n')
	case Boolean:
		if v.Int != 0 {
			return append(dst, "#t\r\n"...)
		}
		return append(dst, "#f\r\n"...)
	case Double:
		dst = append(dst, ',')
		dst = appendDouble(dst, v.Float())
		return append(dst, '\r', '\n')
	case Array, Set, Push:
		dst = appendHeader(dst, byte(v.Kind), int64(len(v.Elems)))
		for _, e := range v.Elems {
			dst = AppendValue(dst, e)
		}
		return dst
	case Map:
		return appendPairs(dst, '%', v.Elems, AppendValue)
	}
	return append(dst, "_\r\n"...)
}

// AppendValue2 encodes v in RESP2, mapping each RESP3-only type to the form
// Redis itself uses for RESP2 clients: Null becomes "$-1", Map a flat array,
// Set and Push arrays, Boolean an integer, Double, BigNumber and Verbatim
// bulk strings, and BulkError a simple error (with CR and LF turned into
// spaces, which a simple error cannot hold). Attributes are dropped.
func AppendValue2(dst []byte, v Value) []byte {
	switch v.Kind {
	case SimpleString, Error:
		return appendLine(dst, byte(v.Kind), v.Str)
	case BulkError:
		dst = append(dst, '-')
		for i := 0; i < len(v.Str); i++ {
			c := v.Str[i]
			if c == '\r' || c == '\n' {
				c = ' '
			}
			dst = append(dst, c)
		}
		return append(dst, '\r', '\n')
	case Integer:
		return appendHeader(dst, ':', v.Int)
	case Boolean:
		if v.Int != 0 {
			return append(dst, ":1\r\n"...)
		}
		return append(dst, ":0\r\n"...)
	case BulkString, BigNumber, Verbatim:
		return AppendBulkString(dst, v.Str)
	case Double:
		var tmp [32]byte
		return AppendBulk(dst, appendDouble(tmp[:0], v.Float()))
	case Array, Set, Push:
		dst = appendHeader(dst, '*', int64(len(v.Elems)))
		for _, e := range v.Elems {
			dst = AppendValue2(dst, e)
		}
		return dst
	case Map:
		return appendPairs(dst, '*', v.Elems, AppendValue2)
	}
	return append(dst, "$-1\r\n"...)
}

// appendPairs writes a map-like aggregate of interleaved keys and values.
// With the '*' type byte it writes the RESP2 flat array, counting elements
// instead of pairs.
func appendPairs(dst []byte, typ byte, kv []Value, enc func([]byte, Value) []byte) []byte {
	pairs := (len(kv) + 1) / 2
	if typ == '*' {
		dst = appendHeader(dst, typ, int64(2*pairs))
	} else {
		dst = appendHeader(dst, typ, int64(pairs))
	}
	for _, e := range kv {
		dst = enc(dst, e)
	}
	if len(kv)%2 == 1 {
		dst = enc(dst, Value{Kind: Null})
	}
	return dst
}

// appendDouble writes the shortest text that parses back to f, in the
// spellings RESP3 uses for the special values.
func appendDouble(dst []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(dst, "inf"...)
	case math.IsInf(f, -1):
		return append(dst, "-inf"...)
	case math.IsNaN(f):
		return append(dst, "nan"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

func appendLine(dst []byte, typ byte, s string) []byte {
	dst = append(dst, typ)
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

func appendHeader(dst []byte, typ byte, n int64) []byte {
	// Most words of most commands are shorter than 100 bytes.
	switch {
	case uint64(n) < 10:
		return append(dst, typ, byte('0'+n), '\r', '\n')
	case uint64(n) < 100:
		return append(dst, typ, byte('0'+n/10), byte('0'+n%10), '\r', '\n')
	}
	dst = append(dst, typ)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}
