package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// A minimal RFC 6455 WebSocket server: the handshake, and framing enough for
// an echo (text, binary, fragmentation, ping/pong, close).

// websocketGUID is the fixed string of RFC 6455, section 1.3.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// WebSocket opcodes (RFC 6455, section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes (RFC 6455, section 7.4.1).
const (
	closeNormal        = 1000
	closeProtocolError = 1002
	closeInvalidData   = 1007
	closeTooBig        = 1009
)

// websocketMessageMax bounds one (possibly fragmented) message.
const websocketMessageMax = 1 << 20

// websocketIdleTimeout closes a connection nobody talks on.
const websocketIdleTimeout = 5 * time.Minute

// websocketAccept computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// headerHasToken reports whether a comma-separated header has token,
// case-insensitively (e.g. "Connection: keep-alive, Upgrade").
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// wsConn is a server-side WebSocket connection.
type wsConn struct {
	conn net.Conn
	rw   *bufio.ReadWriter
}

// upgradeWebSocket answers the opening handshake and takes over the
// connection. On failure it has already written an HTTP error response.
func upgradeWebSocket(w http.ResponseWriter, r *http.Request) (*wsConn, error) {
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") ||
		!headerHasToken(r.Header, "Upgrade", "websocket") {
		http.Error(w, "expected a WebSocket upgrade request", http.StatusBadRequest)
		return nil, errors.New("not a websocket upgrade")
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "unsupported WebSocket version", http.StatusUpgradeRequired)
		return nil, fmt.Errorf("unsupported websocket version %q", r.Header.Get("Sec-WebSocket-Version"))
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		http.Error(w, "invalid Sec-WebSocket-Key", http.StatusBadRequest)
		return nil, fmt.Errorf("invalid websocket key %q", key)
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "WebSocket not supported here", http.StatusInternalServerError)
		return nil, errors.New("response writer cannot hijack")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijacking connection: %w", err)
	}
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + websocketAccept(key) + "\r\n\r\n")
	if err := rw.Flush(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("writing handshake: %w", err)
	}
	return &wsConn{conn: conn, rw: rw}, nil
}

// errProtocol is a frame that breaks RFC 6455.
type errProtocol struct {
	code   int
	reason string
}

func (e *errProtocol) Error() string { return "websocket: " + e.reason }

// readFrame reads one client frame and unmasks its payload.
func (c *wsConn) readFrame() (fin bool, opcode byte, payload []byte, err error) {
	var head [2]byte
	if _, err := io.ReadFull(c.rw, head[:]); err != nil {
		return false, 0, nil, err
	}
	fin = head[0]&0x80 != 0
	if head[0]&0x70 != 0 {
		return false, 0, nil, &errProtocol{closeProtocolError, "reserved bits set"}
	}
	opcode = head[0] & 0x0F
	if head[1]&0x80 == 0 {
		return false, 0, nil, &errProtocol{closeProtocolError, "client frame not masked"}
	}
	length := uint64(head[1] & 0x7F)
	switch length {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(c.rw, ext[:]); err != nil {
			return false, 0, nil, err
		}
		length = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(c.rw, ext[:]); err != nil {
			return false, 0, nil, err
		}
		length = binary.BigEndian.Uint64(ext[:])
	}
	if opcode >= opClose && (!fin || length > 125) {
		return false, 0, nil, &errProtocol{closeProtocolError, "invalid control frame"}
	}
	if length > websocketMessageMax {
		return false, 0, nil, &errProtocol{closeTooBig, "frame too big"}
	}
	var mask [4]byte
	if _, err := io.ReadFull(c.rw, mask[:]); err != nil {
		return false, 0, nil, err
	}
	payload = make([]byte, length)
	if _, err := io.ReadFull(c.rw, payload); err != nil {
		return false, 0, nil, err
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	return fin, opcode, payload, nil
}

// writeFrame writes one unmasked, final server frame.
func (c *wsConn) writeFrame(opcode byte, payload []byte) error {
	head := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n <= 125:
		head = append(head, byte(n))
	case n <= 0xFFFF:
		head = append(head, 126, byte(n>>8), byte(n))
	default:
		head = append(head, 127)
		head = binary.BigEndian.AppendUint64(head, uint64(n))
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.rw.Write(head); err != nil {
		return err
	}
	if _, err := c.rw.Write(payload); err != nil {
		return err
	}
	return c.rw.Flush()
}

// closeWith sends a close frame with code and closes the connection.
func (c *wsConn) closeWith(code int, reason string) {
	payload := binary.BigEndian.AppendUint16(nil, uint16(code))
	payload = append(payload, reason...)
	_ = c.writeFrame(opClose, payload)
	c.conn.Close()
}

// echo sends every text and binary message back until the client closes.
func (c *wsConn) echo() {
	defer c.conn.Close()
	var message []byte
	var messageOp byte
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(websocketIdleTimeout))
		fin, op, payload, err := c.readFrame()
		var perr *errProtocol
		if errors.As(err, &perr) {
			c.closeWith(perr.code, perr.reason)
			return
		}
		if err != nil {
			return // the connection is gone
		}
		switch op {
		case opClose:
			// Echo the status code back, as RFC 6455 section 5.5.1 asks.
			code := payload
			if len(code) > 2 {
				code = code[:2]
			}
			_ = c.writeFrame(opClose, code)
			return
		case opPing:
			if c.writeFrame(opPong, payload) != nil {
				return
			}
			continue
		case opPong:
			continue
		case opText, opBinary:
			if messageOp != 0 {
				c.closeWith(closeProtocolError, "new message inside a fragmented one")
				return
			}
			messageOp, message = op, payload
		case opContinuation:
			if messageOp == 0 {
				c.closeWith(closeProtocolError, "continuation without a message")
				return
			}
			if len(message)+len(payload) > websocketMessageMax {
				c.closeWith(closeTooBig, "message too big")
				return
			}
			message = append(message, payload...)
		default:
			c.closeWith(closeProtocolError, "unknown opcode")
			return
		}
		if !fin {
			continue
		}
		if messageOp == opText && !utf8.Valid(message) {
			c.closeWith(closeInvalidData, "text is not UTF-8")
			return
		}
		if c.writeFrame(messageOp, message) != nil {
			return
		}
		message, messageOp = nil, 0
	}
}
