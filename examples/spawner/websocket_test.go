package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWebsocketAccept(t *testing.T) {
	// The example of RFC 6455, section 1.3.
	if got := websocketAccept("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("unexpected accept %q", got)
	}
}

// wsClient is a minimal test client: it masks what it sends.
type wsClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialWorkspace(t *testing.T, srv *httptest.Server, header string) (*wsClient, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if header == "" {
		header = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	}
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: example\r\n"+header+"\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, resp.Status
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("unexpected Sec-WebSocket-Accept %q", got)
	}
	return &wsClient{t: t, conn: conn, br: br}, resp.Status
}

func (c *wsClient) send(first byte, payload []byte, masked bool) {
	c.t.Helper()
	b := []byte{first}
	maskBit := byte(0)
	if masked {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, maskBit|byte(n))
	case n <= 0xFFFF:
		b = append(b, maskBit|126, byte(n>>8), byte(n))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	body := append([]byte(nil), payload...)
	if masked {
		mask := []byte{0x12, 0x34, 0x56, 0x78}
		b = append(b, mask...)
		for i := range body {
			body[i] ^= mask[i%4]
		}
	}
	if _, err := c.conn.Write(append(b, body...)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) read() (opcode byte, payload []byte) {
	c.t.Helper()
	var head [2]byte
	if _, err := io.ReadFull(c.br, head[:]); err != nil {
		c.t.Fatalf("reading frame: %v", err)
	}
	if head[0]&0x80 == 0 || head[1]&0x80 != 0 {
		c.t.Errorf("expected a final, unmasked server frame, got %x", head)
	}
	n := int(head[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		_, _ = io.ReadFull(c.br, ext[:])
		n = int(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		_, _ = io.ReadFull(c.br, ext[:])
		n = int(binary.BigEndian.Uint64(ext[:]))
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		c.t.Fatalf("reading payload: %v", err)
	}
	return head[0] & 0x0F, payload
}

func newWorkspaceTestServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(&workspaceServer{user: "alice", host: "vscode-alice", log: log.New(io.Discard, "", 0)})
	t.Cleanup(srv.Close)
	return srv
}

func TestWebSocketEcho(t *testing.T) {
	srv := newWorkspaceTestServer(t)
	c, status := dialWorkspace(t, srv, "")
	if c == nil {
		t.Fatalf("handshake failed: %s", status)
	}
	c.send(0x80|opText, []byte("hello"), true)
	if op, p := c.read(); op != opText || string(p) != "hello" {
		t.Errorf("expected text echo, got %d %q", op, p)
	}
	big := []byte(strings.Repeat("x", 70000))
	c.send(0x80|opBinary, big, true)
	if op, p := c.read(); op != opBinary || len(p) != len(big) {
		t.Errorf("expected a 70000-byte binary echo, got %d with %d bytes", op, len(p))
	}
	// A fragmented message with a ping in between.
	c.send(opText, []byte("frag"), true)
	c.send(0x80|opPing, []byte("p1"), true)
	if op, p := c.read(); op != opPong || string(p) != "p1" {
		t.Errorf("expected pong p1, got %d %q", op, p)
	}
	c.send(0x80|opContinuation, []byte("mented"), true)
	if op, p := c.read(); op != opText || string(p) != "fragmented" {
		t.Errorf("expected the joined message, got %d %q", op, p)
	}
	c.send(0x80|opClose, binary.BigEndian.AppendUint16(nil, closeNormal), true)
	if op, p := c.read(); op != opClose || binary.BigEndian.Uint16(p) != closeNormal {
		t.Errorf("expected close 1000 back, got %d %v", op, p)
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("expected the server to close the connection, got %v", err)
	}
}

func TestWebSocketProtocolErrors(t *testing.T) {
	tests := []struct {
		desc         string
		first        byte
		payload      []byte
		masked       bool
		expectedCode uint16
	}{
		{desc: "unmasked", first: 0x80 | opText, payload: []byte("x"), expectedCode: closeProtocolError},
		{desc: "reserved bit", first: 0xC0 | opText, payload: []byte("x"), masked: true, expectedCode: closeProtocolError},
		{desc: "unknown opcode", first: 0x80 | 0x3, payload: []byte("x"), masked: true, expectedCode: closeProtocolError},
		{desc: "continuation first", first: 0x80 | opContinuation, payload: []byte("x"), masked: true, expectedCode: closeProtocolError},
		{desc: "fragmented ping", first: opPing, payload: []byte("x"), masked: true, expectedCode: closeProtocolError},
		{desc: "invalid UTF-8", first: 0x80 | opText, payload: []byte{0xff, 0xfe}, masked: true, expectedCode: closeInvalidData},
	}
	srv := newWorkspaceTestServer(t)
	for _, test := range tests {
		c, status := dialWorkspace(t, srv, "")
		if c == nil {
			t.Fatalf("%s: handshake failed: %s", test.desc, status)
		}
		c.send(test.first, test.payload, test.masked)
		op, p := c.read()
		if op != opClose || len(p) < 2 || binary.BigEndian.Uint16(p) != test.expectedCode {
			t.Errorf("%s: expected close %d, got %d %v", test.desc, test.expectedCode, op, p)
		}
	}
}

func TestWebSocketHandshakeRejected(t *testing.T) {
	tests := []struct {
		desc     string
		header   string
		expected string
	}{
		{desc: "no upgrade", header: "Connection: keep-alive\r\n", expected: "400"},
		{desc: "old version", header: "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", expected: "426"},
		{desc: "bad key", header: "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n", expected: "400"},
	}
	srv := newWorkspaceTestServer(t)
	for _, test := range tests {
		c, status := dialWorkspace(t, srv, test.header)
		if c != nil || !strings.HasPrefix(status, test.expected) {
			t.Errorf("%s: expected %s, got %q", test.desc, test.expected, status)
		}
	}
}

func TestWorkspacePages(t *testing.T) {
	srv := httptest.NewServer(&workspaceServer{user: `<b>eve</b>`, host: "vscode-eve", log: log.New(io.Discard, "", 0)})
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "Workspace of &lt;b&gt;eve&lt;/b&gt;") || strings.Contains(string(body), "<b>eve") {
		t.Errorf("expected the user escaped, got %q", body)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/whoami", nil)
	req.Header.Set("X-Forwarded-Preferred-Username", "eve")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"X-Forwarded-Preferred-Username":["eve"]`) {
		t.Errorf("unexpected whoami %q", body)
	}
	resp, err = http.Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("expected 405 for a POST, got %d", resp.StatusCode)
	}
}
