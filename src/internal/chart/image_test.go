package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/version"
)

// Docker is not available where the tests run, so the image is never built
// here. These tests check instead that the Dockerfile, the Makefile, the
// release workflow and the chart agree with each other and with go.mod.

const dockerfilePath = "images/vault-kms-plugin/Dockerfile"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// parseDockerfile splits a Dockerfile into instructions: comment lines and
// blank lines are dropped (also inside continuations, as Docker does), and
// lines ending in a backslash are joined to the next.
func parseDockerfile(t testing.TB, text string) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(l)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	if cur.Len() != 0 {
		t.Fatalf("%s: a continuation runs off the end of the file", dockerfilePath)
	}
	return out
}

type dockerfile struct {
	all    []instruction
	stages [][]instruction // from each FROM to the next
}

func readDockerfile(t testing.TB) dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{all: parseDockerfile(t, string(b))}
	for _, in := range d.all {
		switch {
		case in.cmd == "FROM":
			d.stages = append(d.stages, []instruction{in})
		case len(d.stages) == 0:
			if in.cmd != "ARG" {
				t.Fatalf("line %d: %s before the first FROM", in.line, in.cmd)
			}
		default:
			d.stages[len(d.stages)-1] = append(d.stages[len(d.stages)-1], in)
		}
	}
	if len(d.stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a final one", len(d.stages))
	}
	return d
}

func (d dockerfile) final() []instruction { return d.stages[len(d.stages)-1] }

// only returns the only instruction of a kind in a stage.
func only(t testing.TB, stage []instruction, cmd string) instruction {
	t.Helper()
	var found []instruction
	for _, in := range stage {
		if in.cmd == cmd {
			found = append(found, in)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s in the stage from line %d, got %d", cmd, stage[0].line, len(found))
	}
	return found[0]
}

// fromImage is the image a FROM names, without --platform and AS.
func fromImage(in instruction) (image, stage string) {
	f := strings.Fields(in.args)
	f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
	if len(f) == 3 && strings.EqualFold(f[1], "AS") {
		return f[0], f[2]
	}
	return f[0], ""
}

// goMod reads go.mod's module path, go line and toolchain line.
func goMod(t testing.TB) (module, goLine, toolchain string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	find := func(re string) string {
		if m := regexp.MustCompile(`(?m)` + re).FindSubmatch(b); m != nil {
			return string(m[1])
		}
		return ""
	}
	return find(`^module\s+(\S+)\s*$`), find(`^go\s+(\S+)\s*$`), find(`^toolchain\s+go(\S+)\s*$`)
}

// goVersion parses 1.26 or 1.26.8 into numbers; a missing patch is 0.
func goVersion(t testing.TB, s string) [3]int {
	t.Helper()
	var v [3]int
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		t.Fatalf("Go version %q", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatalf("Go version %q: %v", s, err)
		}
		v[i] = n
	}
	return v
}

func cmpVersion(a, b [3]int) int { return slices.Compare(a[:], b[:]) }

// makeVar reads a `NAME := value` or `NAME ?= value` line of the Makefile.
func makeVar(t testing.TB, makefile, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `\s*[:?]?=\s*(.*?)\s*$`).FindStringSubmatch(makefile)
	if m == nil {
		t.Fatalf("the Makefile sets no %s", name)
	}
	return m[1]
}

func readFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDockerfile checks the image's Dockerfile against go.mod, the version
// package, the Makefile's build and the chart's pods.
func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	module, goLine, toolchain := goMod(t)
	makefile := readFile(t, "Makefile")

	// Every base image pinned by digest (the tag kept for the reader).
	pinned := regexp.MustCompile(`^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$`)
	for _, st := range d.stages {
		if img, _ := fromImage(st[0]); !pinned.MatchString(img) {
			t.Errorf("line %d: FROM %s is not pinned as name:tag@sha256:<digest>", st[0].line, img)
		}
	}

	// The builder's Go is go.mod's: same minor release, not older than the
	// go line or the toolchain line.
	builder, buildStage := fromImage(d.stages[0][0])
	m := regexp.MustCompile(`^golang:(\d+\.\d+\.\d+)-`).FindStringSubmatch(builder)
	if m == nil {
		t.Fatalf("the first stage is %s, want golang:<x.y.z>-...", builder)
	}
	goImage, goMin := goVersion(t, m[1]), goVersion(t, goLine)
	if goImage[0] != goMin[0] || goImage[1] != goMin[1] || cmpVersion(goImage, goMin) < 0 {
		t.Errorf("builder Go %s does not match go.mod's go %s", m[1], goLine)
	}
	if toolchain != "" && cmpVersion(goImage, goVersion(t, toolchain)) < 0 {
		t.Errorf("builder Go %s is older than go.mod's toolchain go%s", m[1], toolchain)
	}
	if !strings.Contains(d.stages[0][0].args, "--platform=$BUILDPLATFORM") {
		t.Error("the builder should run on $BUILDPLATFORM and cross-compile")
	}

	// The build: static, trimmed, stamped exactly as `make build` stamps.
	build := ""
	for _, in := range d.stages[0] {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	if build == "" {
		t.Fatal("no RUN ... go build in the first stage")
	}
	env := only(t, d.stages[0], "ENV").args
	for _, want := range []string{"CGO_ENABLED=0", "GOTOOLCHAIN=local"} {
		if !strings.Contains(env, want) {
			t.Errorf("the build stage's ENV lacks %s", want)
		}
	}
	if pkg := makeVar(t, makefile, "PKG"); pkg != module {
		t.Errorf("Makefile PKG %q, go.mod module %q", pkg, module)
	}
	ldflags := strings.NewReplacer("$(PKG)", module, "$(VERSION)", "${VERSION}").Replace(makeVar(t, makefile, "LDFLAGS"))
	for _, want := range []string{
		"-trimpath",
		`-ldflags "` + ldflags + `"`,
		"-X " + module + "/src/internal/version.Version=${VERSION}",
		"-o /vault-kms-plugin ./src/cmd/vault-kms-plugin",
		`GOOS="$TARGETOS" GOARCH="$TARGETARCH"`,
	} {
		if !strings.Contains(build, want) {
			t.Errorf("the go build lacks %s:\n%s", want, build)
		}
	}
	// The -X target exists: the version package, with its Version variable.
	_ = version.Version
	if src := readFile(t, "src/internal/version/version.go"); !regexp.MustCompile(`(?m)^var Version = `).MatchString(src) {
		t.Error("src/internal/version declares no `var Version = ...`")
	}
	if _, err := os.Stat(filepath.Join(repoRoot(t), "src", "cmd", "vault-kms-plugin", "main.go")); err != nil {
		t.Error(err)
	}
	for i, st := range d.stages {
		uses := false
		for _, in := range st[1:] {
			if in.cmd != "ARG" && (strings.Contains(in.args, "${VERSION}") || strings.Contains(in.args, "$VERSION")) {
				uses = true
			}
		}
		if uses && !slices.ContainsFunc(st, func(in instruction) bool { return in.cmd == "ARG" && in.args == "VERSION" }) {
			t.Errorf("stage %d uses VERSION without ARG VERSION", i)
		}
	}

	// The final stage: distroless static, non-root by default, the binary
	// at the path the chart runs, `serve` by default.
	final := d.final()
	img, _ := fromImage(final[0])
	if !strings.HasPrefix(img, "gcr.io/distroless/static-debian12:") {
		t.Errorf("final stage %s, want gcr.io/distroless/static-debian12", img)
	}
	if cp := only(t, final, "COPY").args; cp != "--from="+buildStage+" /vault-kms-plugin /vault-kms-plugin" {
		t.Errorf("COPY %s: want the binary from stage %s at /vault-kms-plugin", cp, buildStage)
	}
	if u := only(t, final, "USER").args; u != "65532:65532" {
		t.Errorf("USER %s, want 65532:65532 (distroless nonroot)", u)
	}
	var entrypoint, cmd []string
	for _, tc := range []struct {
		instr string
		into  *[]string
	}{{"ENTRYPOINT", &entrypoint}, {"CMD", &cmd}} {
		if err := json.Unmarshal([]byte(only(t, final, tc.instr).args), tc.into); err != nil {
			t.Errorf("%s is not in exec (JSON) form: %v", tc.instr, err)
		}
	}
	if !slices.Equal(entrypoint, []string{"/vault-kms-plugin"}) || !slices.Equal(cmd, []string{"serve"}) {
		t.Errorf("ENTRYPOINT %q CMD %q, want [/vault-kms-plugin] [serve]", entrypoint, cmd)
	}

	// OCI labels.
	labels := ""
	for _, in := range final {
		if in.cmd == "LABEL" {
			labels += in.args + " "
		}
	}
	c := loadChart(t)
	for _, want := range []string{
		`org.opencontainers.image.source="` + c.Metadata.Sources[0] + `"`,
		`org.opencontainers.image.version="${VERSION}"`,
		`org.opencontainers.image.revision="${REVISION}"`,
		`org.opencontainers.image.licenses=`,
		`org.opencontainers.image.title="vault-kms-plugin"`,
		`org.opencontainers.image.description=`,
	} {
		if !strings.Contains(labels, want) {
			t.Errorf("no label %s", want)
		}
	}

	// The chart's pods run what the image holds, and each says which user
	// it runs as, since the image's default is not the root its socket
	// directory needs.
	r := render(t, valuesFrom(t, []string{"testdata/vault-values.yaml"}))
	static := render(t, withSet(t, valuesFrom(t, []string{"testdata/approle-values.yaml"}), "staticPod.enabled=true"))
	pods := map[string]corev1.PodSpec{
		"DaemonSet":  r.daemonSet(t).Spec.Template.Spec,
		"test pod":   r.testPod(t).Spec,
		"static pod": static.objs[0].obj.(*corev1.Pod).Spec,
	}
	for what, spec := range pods {
		c := spec.Containers[0]
		if !slices.Equal(c.Command, entrypoint) {
			t.Errorf("%s command %q, image ENTRYPOINT %q", what, c.Command, entrypoint)
		}
		if what != "test pod" && (len(c.Args) == 0 || c.Args[0] != cmd[0]) {
			t.Errorf("%s args %q, want %q first", what, c.Args, cmd)
		}
		if spec.SecurityContext == nil || spec.SecurityContext.RunAsUser == nil {
			t.Errorf("%s sets no runAsUser: it would run as the image's user 65532", what)
		}
	}
}

// TestDockerignore: the build context holds what the Dockerfile copies.
func TestDockerignore(t *testing.T) {
	lines := strings.Split(readFile(t, ".dockerignore"), "\n")
	for _, want := range []string{"*", "!go.mod", "!go.sum", "!src"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks the line %q", want)
		}
	}
	df := readFile(t, dockerfilePath)
	for _, want := range []string{"COPY go.mod go.sum ./", "COPY src/ ./src/"} {
		if !strings.Contains(df, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
}

// TestMakeImage: `make image` builds this Dockerfile with buildx for the
// Makefile's platforms, tagged with VERSION, under the chart's default
// repository.
func TestMakeImage(t *testing.T) {
	makeTool, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make is needed to check make -n image: %v", err)
	}
	cmd := exec.Command(makeTool, "-n", "image")
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n image: %v\n%s", err, out)
	}
	makefile := readFile(t, "Makefile")
	ver := strings.TrimSpace(readFile(t, "VERSION"))
	repo := loadChart(t).Values["image"].(map[string]any)["repository"].(string)
	platforms := strings.Join(strings.Fields(makeVar(t, makefile, "PLATFORMS")), ",")
	got := strings.Join(strings.Fields(strings.ReplaceAll(string(out), "\\\n", " ")), " ")
	for _, want := range []string{
		"docker buildx build --platform " + platforms,
		"-f " + dockerfilePath,
		"--build-arg VERSION=" + ver,
		"--build-arg REVISION=",
		"-t " + repo + ":" + ver,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("make image lacks %q:\n%s", want, out)
		}
	}
	if platforms != "linux/amd64,linux/arm64" {
		t.Errorf("PLATFORMS %q: the issue asks for linux/amd64 and linux/arm64", platforms)
	}
}

// TestReleaseWorkflow: the release workflow builds the same image for the
// same platforms as `make image`, signs and publishes what the chart and
// docs promise, and starts with scripts/release-check.sh.
func TestReleaseWorkflow(t *testing.T) {
	path := filepath.Join(repoRoot(t), ".github", "workflows", "release.yaml")
	type trigger struct {
		Push struct {
			Tags []string `json:"tags"`
		} `json:"push"`
	}
	var wf struct {
		On trigger `json:"on"`
		// YAML 1.1 reads the key `on` as the boolean true.
		True        trigger           `json:"true"`
		Permissions map[string]string `json:"permissions"`
		Env         map[string]string `json:"env"`
		Jobs        map[string]struct {
			Needs       any               `json:"needs"`
			Permissions map[string]string `json:"permissions"`
			Steps       []struct {
				Name string            `json:"name"`
				Uses string            `json:"uses"`
				With map[string]any    `json:"with"`
				Run  string            `json:"run"`
				Env  map[string]string `json:"env"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := strictYAMLLoose(b, &wf); err != nil {
		t.Fatal(err)
	}
	if len(wf.On.Push.Tags) == 0 {
		wf.On = wf.True
	}
	if !slices.Contains(wf.On.Push.Tags, "v*") || !slices.Contains(wf.On.Push.Tags, "chart-v*") {
		t.Errorf("tags %v, want v* and chart-v*", wf.On.Push.Tags)
	}
	if wf.Permissions["contents"] != "read" || len(wf.Permissions) != 1 {
		t.Errorf("workflow permissions %v, want contents: read only (jobs widen them)", wf.Permissions)
	}
	c := loadChart(t)
	makefile := readFile(t, "Makefile")
	for k, want := range map[string]string{
		"IMAGE":          c.Values["image"].(map[string]any)["repository"].(string),
		"CHART_REGISTRY": "ghcr.io/vault-kms-plugin/charts",
		"CHART":          c.Metadata.Name,
		"PLATFORMS":      strings.Join(strings.Fields(makeVar(t, makefile, "PLATFORMS")), ","),
	} {
		if wf.Env[k] != want {
			t.Errorf("env %s = %q, want %q", k, wf.Env[k], want)
		}
	}

	var all strings.Builder
	uses := map[string]bool{}
	for name, job := range wf.Jobs {
		for _, s := range job.Steps {
			all.WriteString(s.Run + "\n")
			action, _, _ := strings.Cut(s.Uses, "@")
			if action != "" {
				uses[action] = true
			}
			if action == "docker/build-push-action" {
				for k, want := range map[string]any{
					"file": dockerfilePath, "platforms": "${{ env.PLATFORMS }}", "push": true, "sbom": true,
				} {
					if fmt.Sprint(s.With[k]) != fmt.Sprint(want) {
						t.Errorf("build-push-action %s = %v, want %v", k, s.With[k], want)
					}
				}
				if args := fmt.Sprint(s.With["build-args"]); !strings.Contains(args, "VERSION=") || !strings.Contains(args, "REVISION=") {
					t.Errorf("build-push-action build-args %q: want VERSION and REVISION", args)
				}
			}
			if strings.Contains(s.Run, "cosign sign") && job.Permissions["id-token"] != "write" {
				t.Errorf("job %s signs with cosign keyless but has no id-token: write", name)
			}
		}
	}
	for _, a := range []string{
		"actions/checkout", "docker/setup-qemu-action", "docker/setup-buildx-action", "docker/login-action",
		"docker/build-push-action", "sigstore/cosign-installer", "azure/setup-helm",
	} {
		if !uses[a] {
			t.Errorf("the release workflow does not use %s", a)
		}
	}
	run := all.String()
	for _, want := range []string{
		`scripts/release-check.sh "$GITHUB_REF_NAME"`,
		`cosign sign --yes "$IMAGE@$DIGEST"`,
		`helm package charts/vault-kms-plugin`,
		`helm push "$PKG" "oci://$CHART_REGISTRY"`,
		`cosign sign --yes "$ref"`,
		`cosign sign-blob`,
		`helm repo index`,
		`git push origin gh-pages`,
	} {
		if !strings.Contains(run, want) {
			t.Errorf("no step runs %s", want)
		}
	}

	// The chart workflow builds its test image from the same Dockerfile.
	if cw := readFile(t, ".github/workflows/chart.yaml"); !strings.Contains(cw, "docker build -f "+dockerfilePath) {
		t.Errorf("chart.yaml does not build %s", dockerfilePath)
	}
}

// strictYAMLLoose decodes YAML into a struct that names only some of its
// fields, after checking that the YAML itself is well formed (no duplicate
// keys).
func strictYAMLLoose(y []byte, into any) error {
	j, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return err
	}
	return json.Unmarshal(j, into)
}

// TestReleaseCheck runs scripts/release-check.sh: the tag of this VERSION
// passes (CHANGELOG.md has its section), others are refused.
func TestReleaseCheck(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is needed to run the release check: %v", err)
	}
	ver := strings.TrimSpace(readFile(t, "VERSION"))
	chartVersion := loadChart(t).Metadata.Version
	run := func(tag string) (string, error) {
		cmd := exec.Command(bash, "scripts/release-check.sh", tag)
		cmd.Dir = repoRoot(t)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("v" + ver)
	if err != nil {
		t.Fatalf("release-check v%s: %v\n%s", ver, err, out)
	}
	for _, want := range []string{"kind=app", "version=" + ver, "chart_version=" + chartVersion} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("release-check output lacks %s:\n%s", want, out)
		}
	}
	for _, tag := range []string{"v" + ver + ".1", "v0.0.0-not-this", "chart-v0.0.0", "release-" + ver, ver} {
		if out, err := run(tag); err == nil {
			t.Errorf("release-check %s passed:\n%s", tag, out)
		}
	}
}
