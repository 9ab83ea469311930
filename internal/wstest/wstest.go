// Package wstest is a minimal RFC 6455 WebSocket client and echo server for
// the project's tests: enough to prove that upgrades and frames pass through
// the director both ways. Standard library only.
package wstest

import (
	"bufio"
	"crypto/rand"
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
)

// Frame opcodes (RFC 6455, section 5.2).
const (
	OpText  = 1
	OpClose = 8
	OpPing  = 9
	OpPong  = 10
)

// acceptGUID is the key suffix of the opening handshake (RFC 6455, section 1.3).
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Conn is one side of a WebSocket connection.
type Conn struct {
	conn   net.Conn
	br     *bufio.Reader
	client bool // clients mask what they send
}

// acceptKey returns the Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.New()
	_, _ = io.WriteString(h, key+acceptGUID) // a hash never fails to write
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// IsUpgrade reports whether r asks for a WebSocket.
func IsUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// Accept completes the server side of the opening handshake.
func Accept(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !IsUpgrade(r) || key == "" {
		http.Error(w, "not a WebSocket request", http.StatusBadRequest)
		return nil, errors.New("not a WebSocket request")
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return nil, errors.New("response writer cannot hijack")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijacking: %w", err)
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acceptKey(key))
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("writing handshake: %w", err)
	}
	return &Conn{conn: conn, br: brw.Reader}, nil
}

// EchoHandler answers WebSocket upgrades by echoing every text frame, with
// prefix before it, until the peer closes.
func EchoHandler(prefix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			op, msg, err := c.Read()
			if err != nil {
				return
			}
			switch op {
			case OpText:
				if c.Write(OpText, []byte(prefix+string(msg))) != nil {
					return
				}
			case OpPing:
				if c.Write(OpPong, msg) != nil {
					return
				}
			case OpClose:
				_ = c.Write(OpClose, msg) // closing either way
				return
			}
		}
	}
}

// Dial opens a WebSocket to rawURL ("http://host:port/path") through the
// server at addr, with extra request headers.
func Dial(addr, rawURL string, header http.Header, timeout time.Duration) (*Conn, *http.Response, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	key := base64.StdEncoding.EncodeToString(nonce)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		conn.Close()
		return nil, nil, err
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("writing handshake: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("reading handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, resp, fmt.Errorf("handshake: status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != acceptKey(key) {
		conn.Close()
		return nil, resp, fmt.Errorf("handshake: Sec-WebSocket-Accept %q, want %q", got, acceptKey(key))
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, resp, err
	}
	return &Conn{conn: conn, br: br, client: true}, resp, nil
}

// SetDeadline sets the read and write deadline of the connection.
func (c *Conn) SetDeadline(t time.Time) error {
	return c.conn.SetDeadline(t)
}

// Close closes the connection without a closing handshake.
func (c *Conn) Close() error {
	return c.conn.Close()
}

// Write sends one unfragmented frame.
func (c *Conn) Write(op byte, payload []byte) error {
	hdr := make([]byte, 0, 14)
	hdr = append(hdr, 0x80|op)
	var mask byte
	if c.client {
		mask = 0x80
	}
	n := len(payload)
	switch {
	case n < 126:
		hdr = append(hdr, mask|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, mask|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, mask|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	body := payload
	if c.client {
		key := make([]byte, 4)
		rand.Read(key)
		hdr = append(hdr, key...)
		body = make([]byte, n)
		for i := 0; i < n; i++ {
			body[i] = payload[i] ^ key[i%4]
		}
	}
	if _, err := c.conn.Write(append(hdr, body...)); err != nil {
		return fmt.Errorf("writing frame: %w", err)
	}
	return nil
}

// RoundTrip sends msg in a text frame and returns the text of the frame
// that comes back.
func (c *Conn) RoundTrip(msg string) (string, error) {
	if err := c.Write(OpText, []byte(msg)); err != nil {
		return "", err
	}
	op, reply, err := c.Read()
	if err != nil {
		return "", fmt.Errorf("reading the reply: %w", err)
	}
	if op != OpText {
		return "", fmt.Errorf("reply in a frame of opcode %d, not text", op)
	}
	return string(reply), nil
}

// Read returns the next frame's opcode and payload.
func (c *Conn) Read() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	op := h[0] & 0x0f
	masked := h[1]&0x80 != 0
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 16<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes is too large", n)
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(c.br, key[:]); err != nil {
			return 0, nil, err
		}
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return op, payload, nil
}
