package acl

import "strings"

// The three relations between filters and topics that Allowed needs. Each
// walks the two strings level by level without allocating. A topic whose
// first level starts with '$' is matched only by a filter whose first level
// is that same literal ([MQTT-4.7.2-1]; mosquitto_topic_matches_sub and
// mosquitto_acl_check_default both enforce it).

// matches reports whether topic name t matches filter f
// (mosquitto_topic_matches_sub): '+' is one level (possibly empty), a
// trailing '#' any number of levels including none ("a/#" matches "a").
func matches(f, t string) bool {
	if t[0] == '$' && f[0] != '$' {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(t, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			return frest == "#"
		case !fmore:
			return false
		}
		f, t = frest, trest
	}
}

// covers reports whether every topic that filter s matches is also matched
// by filter f. It is exact except that it answers false for a few pairs
// where the union of f's levels still covers s ("+/#" covers "#").
func covers(f, s string) bool {
	if s[0] == '$' && f[0] != '$' {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		sl, srest, smore := strings.Cut(s, "/")
		if fl == "#" {
			return true
		}
		if sl == "#" {
			return false
		}
		if fl != "+" && fl != sl { // also false for sl == "+" against a literal
			return false
		}
		switch {
		case !fmore && !smore:
			return true
		case !smore:
			return frest == "#"
		case !fmore:
			return false
		}
		f, s = frest, srest
	}
}

// overlaps reports whether some topic matches both filters a and b.
func overlaps(a, b string) bool {
	if (a[0] == '$') != (b[0] == '$') {
		// One starts with a '$' literal, the other with a wildcard (which
		// matches no '$' topic) or another literal.
		return false
	}
	for {
		al, arest, amore := strings.Cut(a, "/")
		bl, brest, bmore := strings.Cut(b, "/")
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		switch {
		case !amore && !bmore:
			return true
		case !amore:
			return brest == "#"
		case !bmore:
			return arest == "#"
		}
		a, b = arest, brest
	}
}
