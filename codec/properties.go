package codec

import (
	"bytes"
	"math/bits"
)

// PropID identifies an MQTT 5.0 property [MQTT 5.0 section 2.2.2.2].
type PropID byte

// The 27 properties of MQTT 5.0, table 2-4.
const (
	PropPayloadFormat              PropID = 0x01 // byte
	PropMessageExpiry              PropID = 0x02 // four-byte integer
	PropContentType                PropID = 0x03 // UTF-8 string
	PropResponseTopic              PropID = 0x08 // UTF-8 string
	PropCorrelationData            PropID = 0x09 // binary data
	PropSubscriptionID             PropID = 0x0B // variable byte integer
	PropSessionExpiry              PropID = 0x11 // four-byte integer
	PropAssignedClientID           PropID = 0x12 // UTF-8 string
	PropServerKeepAlive            PropID = 0x13 // two-byte integer
	PropAuthMethod                 PropID = 0x15 // UTF-8 string
	PropAuthData                   PropID = 0x16 // binary data
	PropRequestProblemInfo         PropID = 0x17 // byte
	PropWillDelay                  PropID = 0x18 // four-byte integer
	PropRequestResponseInfo        PropID = 0x19 // byte
	PropResponseInfo               PropID = 0x1A // UTF-8 string
	PropServerReference            PropID = 0x1C // UTF-8 string
	PropReasonString               PropID = 0x1F // UTF-8 string
	PropReceiveMaximum             PropID = 0x21 // two-byte integer
	PropTopicAliasMaximum          PropID = 0x22 // two-byte integer
	PropTopicAlias                 PropID = 0x23 // two-byte integer
	PropMaximumQoS                 PropID = 0x24 // byte
	PropRetainAvailable            PropID = 0x25 // byte
	PropUser                       PropID = 0x26 // UTF-8 string pair
	PropMaximumPacketSize          PropID = 0x27 // four-byte integer
	PropWildcardSubAvailable       PropID = 0x28 // byte
	PropSubIDAvailable             PropID = 0x29 // byte
	PropSharedSubAvailable         PropID = 0x2A // byte
	maxPropID                             = 0x2A
	propKindByte, propKindU16             = 1, 2
	propKindU32, propKindVarint           = 3, 4
	propKindString, propKindBinary        = 5, 6
	propKindPair                          = 7
)

// propContext says in which packet a property block sits.
type propContext uint16

const (
	ctxConnect propContext = 1 << iota
	ctxConnack
	ctxPublish
	ctxWill
	ctxPubResp // PUBACK, PUBREC, PUBREL, PUBCOMP
	ctxSubscribe
	ctxSuback
	ctxUnsubscribe
	ctxUnsuback
	ctxDisconnect
	ctxAuth
	ctxAll = ctxConnect | ctxConnack | ctxPublish | ctxWill | ctxPubResp | ctxSubscribe | ctxSuback |
		ctxUnsubscribe | ctxUnsuback | ctxDisconnect | ctxAuth
)

// propInfo is one row of table 2-4: the property's data type and the
// packets it may appear in.
type propInfo struct {
	kind    byte
	allowed propContext
}

var propTable = [maxPropID + 1]propInfo{
	PropPayloadFormat:        {propKindByte, ctxPublish | ctxWill},
	PropMessageExpiry:        {propKindU32, ctxPublish | ctxWill},
	PropContentType:          {propKindString, ctxPublish | ctxWill},
	PropResponseTopic:        {propKindString, ctxPublish | ctxWill},
	PropCorrelationData:      {propKindBinary, ctxPublish | ctxWill},
	PropSubscriptionID:       {propKindVarint, ctxPublish | ctxSubscribe},
	PropSessionExpiry:        {propKindU32, ctxConnect | ctxConnack | ctxDisconnect},
	PropAssignedClientID:     {propKindString, ctxConnack},
	PropServerKeepAlive:      {propKindU16, ctxConnack},
	PropAuthMethod:           {propKindString, ctxConnect | ctxConnack | ctxAuth},
	PropAuthData:             {propKindBinary, ctxConnect | ctxConnack | ctxAuth},
	PropRequestProblemInfo:   {propKindByte, ctxConnect},
	PropWillDelay:            {propKindU32, ctxWill},
	PropRequestResponseInfo:  {propKindByte, ctxConnect},
	PropResponseInfo:         {propKindString, ctxConnack},
	PropServerReference:      {propKindString, ctxConnack | ctxDisconnect},
	PropReasonString:         {propKindString, ctxConnack | ctxPubResp | ctxSuback | ctxUnsuback | ctxDisconnect | ctxAuth},
	PropReceiveMaximum:       {propKindU16, ctxConnect | ctxConnack},
	PropTopicAliasMaximum:    {propKindU16, ctxConnect | ctxConnack},
	PropTopicAlias:           {propKindU16, ctxPublish},
	PropMaximumQoS:           {propKindByte, ctxConnack},
	PropRetainAvailable:      {propKindByte, ctxConnack},
	PropUser:                 {propKindPair, ctxAll},
	PropMaximumPacketSize:    {propKindU32, ctxConnect | ctxConnack},
	PropWildcardSubAvailable: {propKindByte, ctxConnack},
	PropSubIDAvailable:       {propKindByte, ctxConnack},
	PropSharedSubAvailable:   {propKindByte, ctxConnack},
}

// PropSet is a set of property identifiers.
type PropSet uint64

// Has reports whether id is in the set.
func (s PropSet) Has(id PropID) bool { return s&(1<<id) != 0 }

// Add puts id in the set.
func (s *PropSet) Add(id PropID) { *s |= 1 << id }

// Remove takes id out of the set.
func (s *PropSet) Remove(id PropID) { *s &^= 1 << id }

// UserProperty is one user property: a name/value pair of UTF-8 strings.
// Decoded values are views into the frame (see the package doc).
type UserProperty struct {
	Key, Value []byte
}

// Properties holds the MQTT 5.0 properties of one packet (or of a will).
//
// After decoding, Present holds every property that appeared, and every
// []byte field is a view into the decoded frame, valid only as long as the
// frame. When encoding, a property is written when its bit is in Present or
// its field is non-zero (non-empty for strings, User and SubscriptionIDs),
// and only if the packet type allows it; set the bit to send an explicit
// zero or empty value. Properties are encoded in ascending identifier order,
// user properties in slice order.
type Properties struct {
	Present PropSet

	PayloadFormat        byte
	MessageExpiry        uint32
	ContentType          []byte
	ResponseTopic        []byte
	CorrelationData      []byte
	SubscriptionIDs      []uint32 // several only in server-to-client PUBLISH
	SessionExpiry        uint32
	AssignedClientID     []byte
	ServerKeepAlive      uint16
	AuthMethod           []byte
	AuthData             []byte
	RequestProblemInfo   byte
	WillDelay            uint32
	RequestResponseInfo  byte
	ResponseInfo         []byte
	ServerReference      []byte
	ReasonString         []byte
	ReceiveMaximum       uint16
	TopicAliasMaximum    uint16
	TopicAlias           uint16
	MaximumQoS           byte
	RetainAvailable      byte
	User                 []UserProperty
	MaximumPacketSize    uint32
	WildcardSubAvailable byte
	SubIDAvailable       byte
	SharedSubAvailable   byte
}

// Reset empties p, keeping the capacity of its slices for reuse.
func (p *Properties) Reset() {
	user, ids := p.User[:0], p.SubscriptionIDs[:0]
	*p = Properties{}
	p.User, p.SubscriptionIDs = user, ids
}

// Has reports whether property id was decoded (or is marked for encoding).
func (p *Properties) Has(id PropID) bool { return p.Present.Has(id) }

// decode reads a property block (its length prefix included) for the
// given packet context. p must have been Reset. Error codes follow
// section 2.2.2.2: a property not allowed in the packet or a truncated
// value is a Malformed Packet; a repeated single-valued property or an
// out-of-range value is a Protocol Error.
func (p *Properties) decode(r *reader, ctx propContext) *Error {
	return p.decodeMemo(r, ctx, nil)
}

// decodeMemo is decode with a UserMemo (nil for none): a block that ends
// with the same user properties as the memo holds (the same bytes, from
// the first user property to the end of the block) has them copied from
// the memo instead of read and validated again.
func (p *Properties) decodeMemo(r *reader, ctx propContext, memo *UserMemo) *Error {
	n, ok := r.varint()
	if !ok || r.len() < int(n) {
		return malformed(r.t, "property length exceeds the packet [MQTT 5.0 section 2.2.2.1]")
	}
	// pr reads the block only. Its fields are set one by one: built as a
	// composite literal it is copied from a stack temporary in 16-byte
	// loads over 8-byte stores, a store-forwarding stall
	// (BenchmarkPublishDecodeUser3: a tenth of its time).
	var pr reader
	pr.b = r.b[:r.off+int(n)]
	pr.off = r.off
	pr.t = r.t
	r.off += int(n)
	// userStart is where the trailing run of user properties starts, -1
	// before the first user property, -2 once another property followed
	// one (no trailing run to remember); userFirst is its first index in
	// p.User.
	userStart, userFirst := -1, 0
	for pr.len() > 0 {
		// An identifier is a Variable Byte Integer, and every defined one
		// is below 0x80: one byte. A first byte with the continuation bit
		// is an unknown identifier or one not in the fewest bytes
		// [MQTT-1.5.5-1], malformed either way; AppendForwarded relies on
		// every identifier of a block Decode accepted being one byte.
		v := pr.b[pr.off]
		pr.off++
		if v == byte(PropUser) {
			// The property a PUBLISH most often carries, several times:
			// allowed in every packet and repeatable, so none of the
			// checks below apply.
			if memo != nil && userStart == -1 {
				rest := pr.b[pr.off-1:]
				if len(memo.run) > 0 && bytes.Equal(rest, memo.run) {
					memo.apply(p)
					return nil
				}
				userStart, userFirst = pr.off-1, len(p.User)
			}
			if err := p.decodeUser(&pr); err != nil {
				return err
			}
			continue
		}
		if userStart >= 0 {
			userStart = -2
		}
		if v > maxPropID || propTable[v].kind == 0 {
			return malformed(r.t, "unknown property identifier [MQTT 5.0 section 2.2.2.2] [MQTT-1.5.5-1]")
		}
		id := PropID(v)
		info := propTable[id]
		if info.allowed&ctx == 0 {
			return malformed(r.t, "property not allowed in this packet [MQTT 5.0 section 2.2.2.2]")
		}
		if p.Present.Has(id) && id != PropUser && !(id == PropSubscriptionID && ctx == ctxPublish) {
			return protocolErr(r.t, "property appears more than once [MQTT 5.0 section 2.2.2.2]")
		}
		p.Present.Add(id)
		if err := p.decodeValue(&pr, id, info.kind); err != nil {
			return err
		}
	}
	if memo != nil && userStart >= 0 && memo.miss() {
		memo.store(pr.b[userStart:], p.User[userFirst:])
	}
	return nil
}

// UserMemo remembers, for one connection, the user properties that ended
// the property block of the last PUBLISH a Decoder accepted with it
// (Decoder.UserMemo), so that a client sending the same ones with every
// message (device metadata, say) has them read and validated once: the
// next block that ends with the same bytes gets its Properties.User
// copied from the memo after one comparison. Those User views point into
// the memo's copy of the bytes, equal to the frame's, and stay valid until
// the memo's next Decode. Other blocks are decoded as without a memo, and
// their trailing user properties replace the remembered ones. Only
// PUBLISH uses it. Not safe for concurrent use.
type UserMemo struct {
	run   []byte         // the trailing user properties as received, identifiers included
	users []UserProperty // run decoded: views into run
	hits  uint64         // blocks that took their user properties from the memo
	// Since the last store: whether the memo served a block, and how many
	// blocks with other trailing user properties it has seen. A client
	// whose user properties change with every message would otherwise pay
	// for a copy per message that no message uses: the memo is refilled
	// after a hit or after memoRelearn misses in a row.
	used   bool
	misses uint8
}

// memoRelearn is how many blocks with other user properties a memo that
// served none sees before it takes the next one.
const memoRelearn = 8

// miss counts a block whose trailing user properties are not the memo's
// and reports whether to remember them instead.
func (m *UserMemo) miss() bool {
	m.misses++
	return len(m.run) == 0 || m.used || m.misses >= memoRelearn
}

// maxUserMemo bounds the user properties a UserMemo keeps a copy of.
const maxUserMemo = 512

// store remembers run, the trailing user properties of an accepted block,
// which decoded to users (views into the frame).
func (m *UserMemo) store(run []byte, users []UserProperty) {
	if len(run) > maxUserMemo {
		m.run, m.users = m.run[:0], m.users[:0]
		return
	}
	m.used, m.misses = false, 0
	m.run = append(m.run[:0], run...)
	m.users = append(m.users[:0], users...)
	// Each is an identifier, a two-byte length and the name, a two-byte
	// length and the value.
	pos := 0
	for i := range m.users {
		u := &m.users[i]
		k := pos + 3
		v := k + len(u.Key) + 2
		pos = v + len(u.Value)
		u.Key, u.Value = m.run[k:v-2:v-2], m.run[v:pos:pos]
	}
}

// apply sets p's user properties, none yet, to the memo's.
func (m *UserMemo) apply(p *Properties) {
	p.User = append(p.User[:0], m.users...)
	p.Present.Add(PropUser)
	m.hits++
	m.used = true
}

func (p *Properties) decodeValue(r *reader, id PropID, kind byte) *Error {
	var (
		b   byte
		u16 uint16
		u32 uint32
		s   []byte
		ok  bool
		err *Error
	)
	switch kind {
	case propKindByte:
		b, ok = r.byte()
		if ok && b > 1 {
			// Every byte property is a 0/1 flag or, for Maximum QoS, 0/1 too
			// [MQTT-3.2.2-9]; other values are a Protocol Error.
			return protocolErr(r.t, "property "+propName(id)+" must be 0 or 1")
		}
	case propKindU16:
		u16, ok = r.uint16()
	case propKindU32:
		u32, ok = r.uint32()
	case propKindVarint:
		u32, ok = r.varint()
	case propKindString:
		s, err = r.str("property " + propName(id))
		if err != nil {
			return err
		}
		ok = true
	case propKindBinary:
		s, ok = r.binary()
	case propKindPair:
		return p.decodeUser(r)
	}
	if !ok {
		return malformed(r.t, "property "+propName(id)+" is truncated")
	}
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat = b
	case PropMessageExpiry:
		p.MessageExpiry = u32
	case PropContentType:
		p.ContentType = s
	case PropResponseTopic:
		p.ResponseTopic = s
	case PropCorrelationData:
		p.CorrelationData = s
	case PropSubscriptionID:
		if u32 == 0 {
			return protocolErr(r.t, "subscription identifier 0 [MQTT 5.0 section 3.8.2.1.2]")
		}
		p.SubscriptionIDs = append(p.SubscriptionIDs, u32)
	case PropSessionExpiry:
		p.SessionExpiry = u32
	case PropAssignedClientID:
		p.AssignedClientID = s
	case PropServerKeepAlive:
		p.ServerKeepAlive = u16
	case PropAuthMethod:
		p.AuthMethod = s
	case PropAuthData:
		p.AuthData = s
	case PropRequestProblemInfo:
		p.RequestProblemInfo = b
	case PropWillDelay:
		p.WillDelay = u32
	case PropRequestResponseInfo:
		p.RequestResponseInfo = b
	case PropResponseInfo:
		p.ResponseInfo = s
	case PropServerReference:
		p.ServerReference = s
	case PropReasonString:
		p.ReasonString = s
	case PropReceiveMaximum:
		if u16 == 0 {
			return protocolErr(r.t, "receive maximum 0 [MQTT 5.0 section 3.1.2.11.3]")
		}
		p.ReceiveMaximum = u16
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum = u16
	case PropTopicAlias:
		if u16 == 0 {
			return &Error{Code: TopicAliasInvalid, Packet: r.t, Reason: "topic alias 0 [MQTT-3.3.2-8]"}
		}
		p.TopicAlias = u16
	case PropMaximumQoS:
		p.MaximumQoS = b
	case PropRetainAvailable:
		p.RetainAvailable = b
	case PropMaximumPacketSize:
		if u32 == 0 {
			return protocolErr(r.t, "maximum packet size 0 [MQTT 5.0 section 3.1.2.11.4]")
		}
		p.MaximumPacketSize = u32
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable = b
	case PropSubIDAvailable:
		p.SubIDAvailable = b
	case PropSharedSubAvailable:
		p.SharedSubAvailable = b
	}
	return nil
}

// decodeUser reads a user property's name and value (its identifier
// already read) and adds it to p.
//
// Both strings complete and ASCII, the usual case, are read here with one
// bounds check each and checked in place (nonASCIIIn, inlined: one or two
// words each for strings of up to 16 bytes); anything else (non-ASCII,
// truncated, invalid) goes through reader.str, which also builds the
// errors (BenchmarkPublishDecodeUser3: 60 -> 45 ns with a call to
// asciiNoNUL per string before).
func (p *Properties) decodeUser(r *reader) *Error {
	var k, v []byte
	b, o := r.b, r.off
	ok := false
	if len(b)-o >= 4 {
		ke := o + 2 + (int(b[o])<<8 | int(b[o+1])) // end of the name
		if ke+2 <= len(b) {
			ve := ke + 2 + (int(b[ke])<<8 | int(b[ke+1])) // end of the value
			if ve <= len(b) {
				if ke-o <= 18 && ve-ke <= 18 && ke >= 8 {
					ok = nonASCIIIn(b, o+2, ke)|nonASCIIIn(b, ke+2, ve) == 0
				} else {
					ok = asciiNoNUL(b[o+2:ke]) && asciiNoNUL(b[ke+2:ve])
				}
				if ok {
					k, v = b[o+2:ke:ke], b[ke+2:ve:ve]
					r.off = ve
				}
			}
		}
	}
	if !ok {
		var err *Error
		if k, err = r.str("user property name"); err != nil {
			return err
		}
		if v, err = r.str("user property value"); err != nil {
			return err
		}
	}
	p.Present.Add(PropUser)
	// Appending an empty element and filling it in place: append with a
	// composite literal builds it on the stack first and copies it in 16-byte
	// loads that straddle its 8-byte stores, a store-forwarding stall
	// (BenchmarkPublishDecodeUser3: a tenth of its time).
	p.User = append(p.User, UserProperty{})
	u := &p.User[len(p.User)-1]
	u.Key, u.Value = k, v
	return nil
}

var propNames = [maxPropID + 1]string{
	PropPayloadFormat: "payload format indicator", PropMessageExpiry: "message expiry interval",
	PropContentType: "content type", PropResponseTopic: "response topic", PropCorrelationData: "correlation data",
	PropSubscriptionID: "subscription identifier", PropSessionExpiry: "session expiry interval",
	PropAssignedClientID: "assigned client identifier", PropServerKeepAlive: "server keep alive",
	PropAuthMethod: "authentication method", PropAuthData: "authentication data",
	PropRequestProblemInfo: "request problem information", PropWillDelay: "will delay interval",
	PropRequestResponseInfo: "request response information", PropResponseInfo: "response information",
	PropServerReference: "server reference", PropReasonString: "reason string",
	PropReceiveMaximum: "receive maximum", PropTopicAliasMaximum: "topic alias maximum",
	PropTopicAlias: "topic alias", PropMaximumQoS: "maximum QoS", PropRetainAvailable: "retain available",
	PropUser: "user property", PropMaximumPacketSize: "maximum packet size",
	PropWildcardSubAvailable: "wildcard subscription available",
	PropSubIDAvailable:       "subscription identifier available", PropSharedSubAvailable: "shared subscription available",
}

func propName(id PropID) string {
	if int(id) < len(propNames) && propNames[id] != "" {
		return propNames[id]
	}
	return "unknown"
}

// String returns the specification's name of the property.
func (id PropID) String() string { return propName(id) }

// ctxMasks[i] is the set of properties allowed in context 1<<i.
var ctxMasks = func() (m [11]PropSet) {
	for id, info := range propTable {
		for i := range m {
			if info.allowed&(1<<i) != 0 {
				m[i] |= 1 << id
			}
		}
	}
	return m
}()

// encoded returns the properties written in context ctx: those in Present
// or with a non-zero value, limited to what ctx allows.
func (p *Properties) encoded(ctx propContext) PropSet {
	s := p.Present
	if p.isZeroScalars() && len(p.User) == 0 && len(p.SubscriptionIDs) == 0 {
		if s == 0 {
			return 0
		}
	} else {
		s |= p.nonZero()
	}
	return s & ctxMasks[bits.TrailingZeros16(uint16(ctx))]
}

// nonZero returns the set of properties whose field is non-zero.
func (p *Properties) nonZero() PropSet {
	var s PropSet
	set := func(ok bool, id PropID) {
		if ok {
			s |= 1 << id
		}
	}
	set(p.PayloadFormat != 0, PropPayloadFormat)
	set(p.MessageExpiry != 0, PropMessageExpiry)
	set(len(p.ContentType) > 0, PropContentType)
	set(len(p.ResponseTopic) > 0, PropResponseTopic)
	set(len(p.CorrelationData) > 0, PropCorrelationData)
	set(len(p.SubscriptionIDs) > 0, PropSubscriptionID)
	set(p.SessionExpiry != 0, PropSessionExpiry)
	set(len(p.AssignedClientID) > 0, PropAssignedClientID)
	set(p.ServerKeepAlive != 0, PropServerKeepAlive)
	set(len(p.AuthMethod) > 0, PropAuthMethod)
	set(len(p.AuthData) > 0, PropAuthData)
	set(p.RequestProblemInfo != 0, PropRequestProblemInfo)
	set(p.WillDelay != 0, PropWillDelay)
	set(p.RequestResponseInfo != 0, PropRequestResponseInfo)
	set(len(p.ResponseInfo) > 0, PropResponseInfo)
	set(len(p.ServerReference) > 0, PropServerReference)
	set(len(p.ReasonString) > 0, PropReasonString)
	set(p.ReceiveMaximum != 0, PropReceiveMaximum)
	set(p.TopicAliasMaximum != 0, PropTopicAliasMaximum)
	set(p.TopicAlias != 0, PropTopicAlias)
	set(p.MaximumQoS != 0, PropMaximumQoS)
	set(p.RetainAvailable != 0, PropRetainAvailable)
	set(len(p.User) > 0, PropUser)
	set(p.MaximumPacketSize != 0, PropMaximumPacketSize)
	set(p.WildcardSubAvailable != 0, PropWildcardSubAvailable)
	set(p.SubIDAvailable != 0, PropSubIDAvailable)
	set(p.SharedSubAvailable != 0, PropSharedSubAvailable)
	return s
}

// size returns the encoded length of the property block's contents for
// context ctx, without its own length prefix.
func (p *Properties) size(ctx propContext) int {
	set := p.encoded(ctx)
	n := 0
	for set != 0 {
		id := PropID(bits.TrailingZeros64(uint64(set)))
		set &^= 1 << id
		switch propTable[id].kind {
		case propKindByte:
			n += 2
		case propKindU16:
			n += 3
		case propKindU32:
			n += 5
		case propKindVarint:
			ids := p.SubscriptionIDs
			if len(ids) == 0 {
				n += 2 // present with value 0: only an explicit Present bit gets here
				continue
			}
			if ctx != ctxPublish {
				ids = ids[:1]
			}
			for _, v := range ids {
				n += 1 + varintLen(int(v))
			}
		case propKindString, propKindBinary:
			n += 1 + binaryLen(p.bytesOf(id))
		case propKindPair:
			for _, u := range p.User {
				n += 1 + binaryLen(u.Key) + binaryLen(u.Value)
			}
		}
	}
	return n
}

// isZeroScalars reports whether every scalar and string field is zero, the
// fast path for packets without properties.
func (p *Properties) isZeroScalars() bool {
	return p.PayloadFormat == 0 && p.MessageExpiry == 0 && p.ContentType == nil && p.ResponseTopic == nil &&
		p.CorrelationData == nil && p.SessionExpiry == 0 && p.AssignedClientID == nil && p.ServerKeepAlive == 0 &&
		p.AuthMethod == nil && p.AuthData == nil && p.RequestProblemInfo == 0 && p.WillDelay == 0 &&
		p.RequestResponseInfo == 0 && p.ResponseInfo == nil && p.ServerReference == nil &&
		p.ReasonString == nil && p.ReceiveMaximum == 0 && p.TopicAliasMaximum == 0 && p.TopicAlias == 0 &&
		p.MaximumQoS == 0 && p.RetainAvailable == 0 && p.MaximumPacketSize == 0 &&
		p.WildcardSubAvailable == 0 && p.SubIDAvailable == 0 && p.SharedSubAvailable == 0
}

func (p *Properties) bytesOf(id PropID) []byte {
	switch id {
	case PropContentType:
		return p.ContentType
	case PropResponseTopic:
		return p.ResponseTopic
	case PropCorrelationData:
		return p.CorrelationData
	case PropAssignedClientID:
		return p.AssignedClientID
	case PropAuthMethod:
		return p.AuthMethod
	case PropAuthData:
		return p.AuthData
	case PropResponseInfo:
		return p.ResponseInfo
	case PropServerReference:
		return p.ServerReference
	case PropReasonString:
		return p.ReasonString
	}
	return nil
}

func (p *Properties) byteOf(id PropID) byte {
	switch id {
	case PropPayloadFormat:
		return p.PayloadFormat
	case PropRequestProblemInfo:
		return p.RequestProblemInfo
	case PropRequestResponseInfo:
		return p.RequestResponseInfo
	case PropMaximumQoS:
		return p.MaximumQoS
	case PropRetainAvailable:
		return p.RetainAvailable
	case PropWildcardSubAvailable:
		return p.WildcardSubAvailable
	case PropSubIDAvailable:
		return p.SubIDAvailable
	case PropSharedSubAvailable:
		return p.SharedSubAvailable
	}
	return 0
}

func (p *Properties) u16Of(id PropID) uint16 {
	switch id {
	case PropServerKeepAlive:
		return p.ServerKeepAlive
	case PropReceiveMaximum:
		return p.ReceiveMaximum
	case PropTopicAliasMaximum:
		return p.TopicAliasMaximum
	case PropTopicAlias:
		return p.TopicAlias
	}
	return 0
}

func (p *Properties) u32Of(id PropID) uint32 {
	switch id {
	case PropMessageExpiry:
		return p.MessageExpiry
	case PropSessionExpiry:
		return p.SessionExpiry
	case PropWillDelay:
		return p.WillDelay
	case PropMaximumPacketSize:
		return p.MaximumPacketSize
	}
	return 0
}

// AppendPublishRaw appends the properties p holds that a PUBLISH may carry,
// without the block's length prefix: the form Publish.RawProperties takes.
func (p *Properties) AppendPublishRaw(dst []byte) []byte {
	return p.appendProps(dst, ctxPublish)
}

// PublishRawSize is the length AppendPublishRaw appends.
func (p *Properties) PublishRawSize() int { return p.size(ctxPublish) }

// appendTo appends the property block, length prefix first; size is the
// length of the block's contents (p.size(ctx), plus anything the caller
// appends after).
func (p *Properties) appendTo(dst []byte, ctx propContext, size int) []byte {
	dst = appendVarint(dst, size)
	if size == 0 {
		return dst
	}
	return p.appendProps(dst, ctx)
}

// appendProps appends the properties of context ctx, without a length.
func (p *Properties) appendProps(dst []byte, ctx propContext) []byte {
	for set := p.encoded(ctx); set != 0; {
		id := PropID(bits.TrailingZeros64(uint64(set)))
		set &^= 1 << id
		switch propTable[id].kind {
		case propKindByte:
			dst = append(dst, byte(id), p.byteOf(id))
		case propKindU16:
			dst = appendUint16(append(dst, byte(id)), p.u16Of(id))
		case propKindU32:
			dst = appendUint32(append(dst, byte(id)), p.u32Of(id))
		case propKindVarint:
			ids := p.SubscriptionIDs
			if len(ids) == 0 {
				dst = append(dst, byte(id), 0)
				continue
			}
			if ctx != ctxPublish {
				ids = ids[:1]
			}
			for _, v := range ids {
				dst = appendVarint(append(dst, byte(id)), int(v))
			}
		case propKindString, propKindBinary:
			dst = appendBinary(append(dst, byte(id)), p.bytesOf(id))
		case propKindPair:
			for _, u := range p.User {
				dst = appendBinary(append(dst, byte(id)), u.Key)
				dst = appendBinary(dst, u.Value)
			}
		}
	}
	return dst
}
