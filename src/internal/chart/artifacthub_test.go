package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"
	yaml "go.yaml.in/yaml/v3"
)

// The annotations Artifact Hub reads from Chart.yaml, as its documentation
// gives them (https://artifacthub.io/docs/topics/annotations/helm/).
type (
	ahImage struct {
		Name        string   `yaml:"name"`
		Image       string   `yaml:"image"`
		Platforms   []string `yaml:"platforms"`
		Whitelisted bool     `yaml:"whitelisted"`
	}
	ahLink struct {
		Name string `yaml:"name"`
		URL  string `yaml:"url"`
	}
	ahChange struct {
		Kind        string   `yaml:"kind"`
		Description string   `yaml:"description"`
		Links       []ahLink `yaml:"links"`
	}
)

// changeKinds are the kinds Artifact Hub accepts, and the CHANGELOG heading
// each one comes from.
var changeKinds = map[string]string{
	"added": "Added", "changed": "Changed", "deprecated": "Deprecated",
	"removed": "Removed", "fixed": "Fixed", "security": "Security",
}

// decodeAnnotation decodes a YAML-valued annotation strictly: an unknown
// field is a misspelt one.
func decodeAnnotation(t *testing.T, annotations map[string]string, name string, into any) {
	t.Helper()
	raw, ok := annotations[name]
	if !ok {
		t.Fatalf("Chart.yaml has no %s annotation", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		t.Fatalf("Chart.yaml annotation %s is not the YAML Artifact Hub reads: %v", name, err)
	}
}

// TestArtifactHubAnnotations: Chart.yaml's Artifact Hub metadata agrees
// with the chart, the image it installs, the release platforms and the
// CHANGELOG.
func TestArtifactHubAnnotations(t *testing.T) {
	c := loadChart(t)
	meta := c.Metadata
	root := repoRoot(t)
	repoURL := imageLabel(t, root, "org.opencontainers.image.source")

	t.Run("images", func(t *testing.T) {
		var images []ahImage
		decodeAnnotation(t, meta.Annotations, "artifacthub.io/images", &images)
		if len(images) != 1 {
			t.Fatalf("artifacthub.io/images lists %d images, want the plugin's one", len(images))
		}
		repo := c.Values["image"].(map[string]any)["repository"].(string)
		want := repo + ":" + meta.AppVersion
		if images[0].Image != want {
			t.Errorf("artifacthub.io/images image = %q, want %q (values.yaml's image.repository, tagged with appVersion)", images[0].Image, want)
		}
		if images[0].Name != meta.Name {
			t.Errorf("artifacthub.io/images name = %q, want %q", images[0].Name, meta.Name)
		}
		if got, want := images[0].Platforms, makefilePlatforms(t, root); !slices.Equal(got, want) {
			t.Errorf("artifacthub.io/images platforms = %v, want the Makefile's PLATFORMS %v", got, want)
		}
	})

	t.Run("changes", func(t *testing.T) {
		var changes []ahChange
		decodeAnnotation(t, meta.Annotations, "artifacthub.io/changes", &changes)
		if len(changes) == 0 {
			t.Fatal("artifacthub.io/changes is empty")
		}
		unreleased := changelogUnreleased(t, root)
		for i, ch := range changes {
			heading, ok := changeKinds[ch.Kind]
			if !ok {
				t.Errorf("artifacthub.io/changes[%d]: kind %q is not one Artifact Hub accepts (%v)", i, ch.Kind, sortedKeys(changeKinds))
				continue
			}
			if !strings.Contains(unreleased, "\n### "+heading+"\n") {
				t.Errorf("artifacthub.io/changes[%d]: kind %s, but the CHANGELOG's Unreleased section has no ### %s", i, ch.Kind, heading)
			}
			if strings.TrimSpace(ch.Description) == "" {
				t.Errorf("artifacthub.io/changes[%d]: no description", i)
			}
		}
	})

	t.Run("links and home", func(t *testing.T) {
		var links []ahLink
		decodeAnnotation(t, meta.Annotations, "artifacthub.io/links", &links)
		names := map[string]bool{}
		for _, l := range links {
			names[l.Name] = true
			checkRepoURL(t, root, repoURL, "artifacthub.io/links "+l.Name, l.URL)
		}
		for _, want := range []string{"source", "docs"} {
			if !names[want] {
				t.Errorf("artifacthub.io/links has no %q link", want)
			}
		}
		if meta.Home != repoURL {
			t.Errorf("home = %q, want the repository %q (the image's source label)", meta.Home, repoURL)
		}
		if !slices.Equal(meta.Sources, []string{repoURL}) {
			t.Errorf("sources = %v, want [%s]", meta.Sources, repoURL)
		}
	})

	t.Run("category, prerelease and license", func(t *testing.T) {
		if got := meta.Annotations["artifacthub.io/category"]; got != "security" {
			t.Errorf("artifacthub.io/category = %q, want security", got)
		}
		v, err := semver.StrictNewVersion(meta.Version)
		if err != nil {
			t.Fatalf("version %q: %v", meta.Version, err)
		}
		got, set := meta.Annotations["artifacthub.io/prerelease"]
		switch {
		case v.Prerelease() != "" && got != "true":
			t.Errorf("version %s is a pre-release: set artifacthub.io/prerelease: \"true\"", meta.Version)
		case v.Prerelease() == "" && set && got != "false":
			t.Errorf("version %s is no pre-release, but artifacthub.io/prerelease is %q", meta.Version, got)
		}
		// A license is the repository's to state: the annotation follows a
		// LICENSE file, and the image's label says the same.
		license, set := meta.Annotations["artifacthub.io/license"]
		_, err = os.Stat(filepath.Join(root, "LICENSE"))
		hasFile := err == nil
		label := imageLabel(t, root, "org.opencontainers.image.licenses")
		switch {
		case hasFile && (!set || license != label):
			t.Errorf("artifacthub.io/license = %q, want the image's licenses label %q (the repository has a LICENSE)", license, label)
		case !hasFile && set:
			t.Errorf("artifacthub.io/license = %q, but the repository has no LICENSE file to back it", license)
		}
	})

	t.Run("helm lint --strict", func(t *testing.T) {
		lintStrict(t, valuesFrom(t, []string{filepath.Join(chartDir(t), "ci", "default-values.yaml")}))
	})
}

// checkRepoURL checks that url is the repository or a file in it on main,
// and that such a file exists here.
func checkRepoURL(t *testing.T, root, repoURL, what, url string) {
	t.Helper()
	if url == repoURL {
		return
	}
	path, ok := strings.CutPrefix(url, repoURL+"/blob/main/")
	if !ok {
		t.Errorf("%s = %q: want %s or a file under %s/blob/main/", what, url, repoURL, repoURL)
		return
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(path))); err != nil {
		t.Errorf("%s = %q: the repository has no %s", what, url, path)
	}
}

// imageLabel reads a LABEL of the image's Dockerfile.
func imageLabel(t *testing.T, root, name string) string {
	t.Helper()
	df, err := os.ReadFile(filepath.Join(root, "images", "vault-kms-plugin", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(regexp.QuoteMeta(name) + `="([^"]+)"`).FindSubmatch(df)
	if m == nil {
		t.Fatalf("the Dockerfile has no %s label", name)
	}
	return string(m[1])
}

// makefilePlatforms is the Makefile's PLATFORMS, the platforms a release
// image is built for.
func makefilePlatforms(t *testing.T, root string) []string {
	t.Helper()
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^PLATFORMS\s*:?=\s*(.+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile sets no PLATFORMS")
	}
	return strings.Fields(string(m[1]))
}

// changelogUnreleased is the CHANGELOG's Unreleased section.
func changelogUnreleased(t *testing.T, root string) string {
	t.Helper()
	cl, err := os.ReadFile(filepath.Join(root, "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(cl), "\n## [Unreleased]\n")
	if !ok {
		t.Fatal("CHANGELOG.md has no ## [Unreleased] section")
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
