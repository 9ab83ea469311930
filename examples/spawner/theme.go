package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Theme is how the spawner's pages fit the site they belong to.
type Theme struct {
	// Product is the product's name, shown above every page's heading and
	// in the window title. Default: "Workspaces".
	Product string
	// Title is the loading page's heading. Default: "Starting your
	// workspace".
	Title string
	// Logo is the logo as a data: URL (the pages load nothing from
	// elsewhere); empty shows none. Default: none.
	Logo template.URL
	// Accent is the accent colour as "#rrggbb". Default: "#2563eb".
	Accent string
}

// Colours of the pages' surfaces: the accent is adjusted against these so
// that text in it keeps a WCAG AA contrast of 4.5:1 in both schemes.
const (
	lightSurface = "#ffffff"
	darkSurface  = "#1e293b"
	minContrast  = 4.5
	maxLogoBytes = 256 << 10
	defaultColor = "#2563eb"
)

// ThemeSettings are the theme's settings as given (SPAWNER_* variables).
type ThemeSettings struct {
	Product, Title, LogoFile, Accent string
}

// themeFlags adds the theme's flags to fs, with the SPAWNER_* variables
// (read through str) as their defaults.
func themeFlags(fs *flag.FlagSet, str func(env, def string) string, s *ThemeSettings) {
	fs.StringVar(&s.Product, "product-name", str("SPAWNER_PRODUCT_NAME", "Workspaces"), "product name on the pages (env SPAWNER_PRODUCT_NAME)")
	fs.StringVar(&s.Title, "title", str("SPAWNER_TITLE", "Starting your workspace"), "the loading page's heading (env SPAWNER_TITLE)")
	fs.StringVar(&s.LogoFile, "logo", str("SPAWNER_LOGO", ""), "image file (SVG, PNG, JPEG, GIF, WebP; at most 256 KiB) shown inline as the logo (env SPAWNER_LOGO)")
	fs.StringVar(&s.Accent, "accent-color", str("SPAWNER_ACCENT_COLOR", defaultColor), "accent colour, #rrggbb; adjusted for contrast in light and dark mode (env SPAWNER_ACCENT_COLOR)")
}

// NewTheme checks s and builds the theme; the logo file is read once, here.
func NewTheme(s ThemeSettings) (Theme, error) {
	t := Theme{Product: strings.TrimSpace(s.Product), Title: strings.TrimSpace(s.Title), Accent: strings.TrimSpace(s.Accent)}
	if t.Product == "" {
		t.Product = "Workspaces"
	}
	if t.Title == "" {
		t.Title = "Starting your workspace"
	}
	if len(t.Product) > 80 || len(t.Title) > 120 {
		return t, fmt.Errorf("product-name and title: at most 80 and 120 bytes")
	}
	if t.Accent == "" {
		t.Accent = defaultColor
	}
	if _, err := parseColor(t.Accent); err != nil {
		return t, fmt.Errorf("accent-color: %w", err)
	}
	if s.LogoFile != "" {
		logo, err := logoURL(s.LogoFile)
		if err != nil {
			return t, fmt.Errorf("logo: %w", err)
		}
		t.Logo = logo
	}
	return t, nil
}

// logoURL reads an image file into a data: URL.
func logoURL(path string) (template.URL, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if len(data) == 0 || len(data) > maxLogoBytes {
		return "", fmt.Errorf("%q: want an image of 1 byte to %d KiB, got %d bytes", path, maxLogoBytes>>10, len(data))
	}
	mt := http.DetectContentType(data)
	if strings.EqualFold(filepath.Ext(path), ".svg") {
		mt = "image/svg+xml"
	}
	switch mt {
	case "image/svg+xml", "image/png", "image/jpeg", "image/gif", "image/webp":
	default:
		return "", fmt.Errorf("%q: want an SVG, PNG, JPEG, GIF or WebP image, got %s", path, mt)
	}
	// An image in an <img> runs no script, even an SVG one, and the URL is
	// built here from bytes, never from a request.
	return template.URL("data:" + mt + ";base64," + base64.StdEncoding.EncodeToString(data)), nil
}

// palette is the theme's colours for one scheme.
type palette struct {
	Accent   string // fills: buttons, the current stage, the progress bar
	OnAccent string // text on an Accent fill
	Text     string // the accent as text or a line on the surface
}

// Light and Dark are the accent adjusted for each scheme.
func (t Theme) Light() palette { return paletteFor(t.Accent, lightSurface) }
func (t Theme) Dark() palette  { return paletteFor(t.Accent, darkSurface) }

// paletteFor moves the accent towards black (on a light surface) or white
// (on a dark one) until it reads at 4.5:1 there, and picks black or white
// text for fills of it, whichever contrasts more (one of them always reaches
// 4.5:1).
func paletteFor(accent, surface string) palette {
	a, err := parseColor(accent)
	if err != nil {
		a, _ = parseColor(defaultColor)
	}
	s, _ := parseColor(surface)
	toward := rgb{0, 0, 0}
	if luminance(s) < 0.5 {
		toward = rgb{255, 255, 255}
	}
	c := a
	for i := 1; contrast(c, s) < minContrast && i <= 50; i++ {
		c = mix(a, toward, float64(i)/50)
	}
	return palette{Accent: c.hex(), OnAccent: onColor(c).hex(), Text: c.hex()}
}

func onColor(c rgb) rgb {
	black, white := rgb{0, 0, 0}, rgb{255, 255, 255}
	if contrast(c, white) >= contrast(c, black) {
		return white
	}
	return black
}

type rgb struct{ r, g, b float64 }

func (c rgb) hex() string {
	return fmt.Sprintf("#%02x%02x%02x", int(math.Round(c.r)), int(math.Round(c.g)), int(math.Round(c.b)))
}

// parseColor reads "#rgb" or "#rrggbb".
func parseColor(s string) (rgb, error) {
	h := strings.TrimPrefix(s, "#")
	if len(h) == 3 {
		h = string([]byte{h[0], h[0], h[1], h[1], h[2], h[2]})
	}
	if !strings.HasPrefix(s, "#") || len(h) != 6 {
		return rgb{}, fmt.Errorf("want a colour like #2563eb, got %q", s)
	}
	n, err := strconv.ParseUint(h, 16, 32)
	if err != nil {
		return rgb{}, fmt.Errorf("want a colour like #2563eb, got %q", s)
	}
	return rgb{float64(n >> 16), float64(n >> 8 & 0xff), float64(n & 0xff)}, nil
}

func mix(a, b rgb, t float64) rgb {
	return rgb{a.r + (b.r-a.r)*t, a.g + (b.g-a.g)*t, a.b + (b.b-a.b)*t}
}

// luminance is the relative luminance of WCAG 2.
func luminance(c rgb) float64 {
	ch := func(v float64) float64 {
		v = math.Round(v) / 255
		if v <= 0.03928 {
			return v / 12.92
		}
		return math.Pow((v+0.055)/1.055, 2.4)
	}
	return 0.2126*ch(c.r) + 0.7152*ch(c.g) + 0.0722*ch(c.b)
}

// contrast is the contrast ratio of WCAG 2, from 1 to 21.
func contrast(a, b rgb) float64 {
	la, lb := luminance(a), luminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}
