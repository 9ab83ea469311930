package director

import (
	"fmt"
	"strings"
)

// The name → host mapping.
//
// A container's name is the DNS label "<prefix>-<mapped name>", at most 63
// characters. Under both policies the mapped name holds only the bytes
// a-z, 0-9 and '-', so no user name can put a dot, colon, slash, '@', space
// or control character into the host, or reach a host outside "<prefix>-*".
//
// Under "strict" the mapped name is the user name itself, which must already
// be a lowercase DNS-label part: a-z and 0-9, with '-' allowed inside but not
// at either end. A spawner that concatenates prefix and name gets the same
// container name.
//
// Under "escape" every byte of the name other than a-z and 0-9 is written as
// '-' followed by its two lowercase hex digits: "Jack" → "-4aack",
// "jack.doe" → "jack-2edoe", "jack-doe" → "jack-2ddoe",
// "jack@doe" → "jack-40doe". A '-' in the result always starts such a
// three-byte escape, so the result decodes back to exactly one name: two
// different names never share a container. Names of only a-z and 0-9 map to
// themselves under both policies.

const hexDigits = "0123456789abcdef"

// containerLabel returns the mapped name for a user name under the given
// policy, or an error whose text may be shown to the user.
func containerLabel(name string, escape bool, room int) (string, error) {
	if name == "" {
		return "", errEmptyUsername
	}
	mapped := name
	if escape {
		mapped = escapeName(name)
	} else if !isStrictName(name) {
		return "", fmt.Errorf("user name %q cannot name a container: only lowercase letters a-z, digits 0-9 and inner '-' are allowed (usernamePolicy %q)", name, PolicyStrict)
	}
	if len(mapped) > room {
		return "", fmt.Errorf("user name %q is too long: its container name would be longer than %d characters", name, maxLabelLength)
	}
	return mapped, nil
}

// isStrictName reports whether name is a non-empty lowercase DNS-label part
// that neither starts nor ends with '-'.
func isStrictName(name string) bool {
	// One call into compiled code, not a loop: this runs for every request
	// whose container is not cached, and Yaegi makes loops costly.
	return name != "" && name[0] != '-' && name[len(name)-1] != '-' && strings.Trim(name, labelBytes) == ""
}

// labelBytes are the bytes of a lowercase DNS label; plainBytes those
// escapeName keeps as they are.
const (
	labelBytes = plainBytes + "-"
	plainBytes = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// escapeName maps any name injectively to the bytes a-z, 0-9 and '-'.
func escapeName(name string) string {
	if strings.Trim(name, plainBytes) == "" {
		return name
	}
	n := 0
	for i := 0; i < len(name); i++ {
		if !isPlainByte(name[i]) {
			n++
		}
	}
	buf := make([]byte, 0, len(name)+2*n)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isPlainByte(c) {
			buf = append(buf, c)
			continue
		}
		buf = append(buf, '-', hexDigits[c>>4], hexDigits[c&0x0f])
	}
	return string(buf)
}

// isPlainByte reports whether escapeName keeps b as it is.
func isPlainByte(b byte) bool {
	return ('a' <= b && b <= 'z') || ('0' <= b && b <= '9')
}
