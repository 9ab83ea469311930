package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAccentContrast: whatever accent a site picks, the pages show it at
// WCAG AA contrast in both schemes, with readable text on its fills.
func TestAccentContrast(t *testing.T) {
	for _, accent := range []string{"#2563eb", "#ffff00", "#000000", "#ffffff", "#777777", "#ff0000", "#00ff00", "#0ea5e9", "#fb923c", "#1e293b", "#fff"} {
		theme, err := NewTheme(ThemeSettings{Accent: accent})
		if err != nil {
			t.Fatalf("%s: %v", accent, err)
		}
		for _, c := range []struct {
			scheme  string
			p       palette
			surface string
		}{{"light", theme.Light(), lightSurface}, {"dark", theme.Dark(), darkSurface}} {
			fill, _ := parseColor(c.p.Accent)
			on, _ := parseColor(c.p.OnAccent)
			text, _ := parseColor(c.p.Text)
			surface, _ := parseColor(c.surface)
			if r := contrast(text, surface); r < minContrast {
				t.Errorf("%s, %s: the accent %s on the surface reads at %.2f:1", accent, c.scheme, c.p.Text, r)
			}
			if r := contrast(on, fill); r < minContrast {
				t.Errorf("%s, %s: %s on the accent %s reads at %.2f:1", accent, c.scheme, c.p.OnAccent, c.p.Accent, r)
			}
		}
	}
	// The default accent is kept as it is where it already reads well.
	if got := (Theme{Accent: "#2563eb"}).Light().Accent; got != "#2563eb" {
		t.Errorf("expected #2563eb kept on white, got %s", got)
	}
}

// TestSchemeContrast: the fixed colours of both schemes read at 4.5:1
// where text is drawn on them.
func TestSchemeContrast(t *testing.T) {
	for name, s := range map[string]colorScheme{"light": lightScheme, "dark": darkScheme} {
		pairs := []struct{ what, fg, bg string }{
			{"text", s.Text, s.Surface},
			{"muted text", s.Muted, s.Surface},
			{"muted text on a chip", s.Muted, s.Subtle},
			{"text on the current stage", s.Text, s.Subtle},
			{"a done mark", s.DoneText, s.DoneBg},
			{"the state chip", s.BadText, s.BadBg},
			{"the log", s.LogText, s.LogBg},
		}
		for _, p := range pairs {
			fg, err1 := parseColor(p.fg)
			bg, err2 := parseColor(p.bg)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s %s: %v %v", name, p.what, err1, err2)
			}
			if r := contrast(fg, bg); r < minContrast {
				t.Errorf("%s: %s (%s on %s) reads at %.2f:1, below %.1f:1", name, p.what, p.fg, p.bg, r, minContrast)
			}
		}
	}
}

func TestNewTheme(t *testing.T) {
	dir := t.TempDir()
	svg := filepath.Join(dir, "logo.svg")
	png := filepath.Join(dir, "logo.png")
	txt := filepath.Join(dir, "logo.txt")
	big := filepath.Join(dir, "big.png")
	_ = os.WriteFile(svg, []byte(`<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>`), 0o644)
	_ = os.WriteFile(png, []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"), 0o644)
	_ = os.WriteFile(txt, []byte("hello"), 0o644)
	_ = os.WriteFile(big, make([]byte, maxLogoBytes+1), 0o644)
	tests := []struct {
		desc          string
		settings      ThemeSettings
		expectedErr   string
		expectedLogo  string
		expectedTitle string
	}{
		{desc: "defaults", expectedTitle: "Starting your workspace"},
		{desc: "all set", settings: ThemeSettings{Product: "Acme IDE", Title: "Getting your IDE ready", LogoFile: svg, Accent: "#c026d3"},
			expectedLogo: "data:image/svg+xml;base64,", expectedTitle: "Getting your IDE ready"},
		{desc: "png logo", settings: ThemeSettings{LogoFile: png}, expectedLogo: "data:image/png;base64,", expectedTitle: "Starting your workspace"},
		{desc: "a colour name", settings: ThemeSettings{Accent: "purple"}, expectedErr: `accent-color: want a colour like #2563eb, got "purple"`},
		{desc: "a bad hex", settings: ThemeSettings{Accent: "#12345g"}, expectedErr: "accent-color: want a colour"},
		{desc: "no such logo", settings: ThemeSettings{LogoFile: filepath.Join(dir, "nope.svg")}, expectedErr: "logo: open"},
		{desc: "not an image", settings: ThemeSettings{LogoFile: txt}, expectedErr: "want an SVG, PNG, JPEG, GIF or WebP image, got text/plain"},
		{desc: "too big", settings: ThemeSettings{LogoFile: big}, expectedErr: "want an image of 1 byte to 256 KiB"},
	}
	for _, test := range tests {
		theme, err := NewTheme(test.settings)
		if test.expectedErr != "" {
			if err == nil || !strings.Contains(err.Error(), test.expectedErr) {
				t.Errorf("%s: expected an error with %q, got %v", test.desc, test.expectedErr, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", test.desc, err)
			continue
		}
		if !strings.HasPrefix(string(theme.Logo), test.expectedLogo) || (test.expectedLogo == "") != (theme.Logo == "") {
			t.Errorf("%s: expected a logo starting %q, got %.40q", test.desc, test.expectedLogo, theme.Logo)
		}
		if theme.Title != test.expectedTitle {
			t.Errorf("%s: expected the title %q, got %q", test.desc, test.expectedTitle, theme.Title)
		}
	}
}

// TestThemedPages: the theme reaches both pages, and the pages stay
// self-contained: the logo is inline and the CSP allows nothing else.
func TestThemedPages(t *testing.T) {
	logo := filepath.Join(t.TempDir(), "logo.svg")
	_ = os.WriteFile(logo, []byte(`<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>`), 0o644)
	theme, err := NewTheme(ThemeSettings{Product: "Acme <IDE>", Title: "Getting your IDE ready", LogoFile: logo, Accent: "#c026d3"})
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend()
	b.set(State{Name: "vscode-joe", Status: StatusExited, ExitCode: 2, Managed: true})
	h := newTestHandler(t, b, HandlerConfig{Theme: theme})
	for _, name := range []string{"vscode-jack", "vscode-joe"} {
		w := serve(h, pageLoad("/", name))
		body := w.Body.String()
		for _, expected := range []string{"Acme &lt;IDE&gt;", `<img src="data:image/svg&#43;xml;base64,`, "--accent: #c026d3", "prefers-color-scheme: dark"} {
			if !strings.Contains(body, expected) {
				t.Errorf("%s: expected the page to contain %q", name, expected)
			}
		}
		if name == "vscode-jack" && !strings.Contains(body, "<h1>Getting your IDE ready</h1>") {
			t.Errorf("expected the loading page's heading from the theme")
		}
		if strings.Count(body, "src=") != 1 || strings.Contains(body, "href=") || strings.Contains(body, "url(") {
			t.Errorf("%s: expected no external assets", name)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "img-src data:") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: expected a CSP that allows inline images only, got %q", name, csp)
		}
		if name == "vscode-joe" && w.Code != http.StatusBadGateway {
			t.Errorf("expected joe's error page, got %d", w.Code)
		}
	}
}

// TestRunRejectsBadTheme: a bad theme setting stops the spawner at start,
// naming the setting.
func TestRunRejectsBadTheme(t *testing.T) {
	for _, test := range []struct {
		env      map[string]string
		expected string
	}{
		{map[string]string{"SPAWNER_BACKEND": "process", "SPAWNER_ACCENT_COLOR": "blue"}, `accent-color: want a colour like #2563eb, got "blue"`},
		{map[string]string{"SPAWNER_BACKEND": "process", "SPAWNER_LOGO": "/nonexistent/logo.svg"}, "logo: open /nonexistent/logo.svg"},
	} {
		var stderr bytes.Buffer
		if code := run(nil, envFrom(test.env), &stderr); code != 2 || !strings.Contains(stderr.String(), test.expected) {
			t.Errorf("%v: expected exit code 2 and %q, got %d and %q", test.env, test.expected, code, stderr.String())
		}
	}
}
