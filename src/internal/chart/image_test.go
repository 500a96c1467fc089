package chart

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/version"
)

// Docker is not available where the tests run, so the Dockerfile is never
// built here. These tests check instead that the Dockerfile, the Makefile,
// the release workflow and the chart agree with each other and with go.mod,
// and that the image `make image-oci` builds without Docker is the
// Dockerfile's.

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
	entrypoint, cmd := execForm(t, final)
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

// execForm reads a stage's ENTRYPOINT and CMD, which must be in exec (JSON)
// form.
func execForm(t testing.TB, stage []instruction) (entrypoint, cmd []string) {
	t.Helper()
	for _, tc := range []struct {
		instr string
		into  *[]string
	}{{"ENTRYPOINT", &entrypoint}, {"CMD", &cmd}} {
		if err := json.Unmarshal([]byte(only(t, stage, tc.instr).args), tc.into); err != nil {
			t.Errorf("%s is not in exec (JSON) form: %v", tc.instr, err)
		}
	}
	return entrypoint, cmd
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

// The base image's runtime settings the final stage inherits:
// distroless/static-debian12:nonroot's working directory and environment.
// src/testbed/ociimage's stand-in for it must set the same.
var (
	distrolessNonrootWorkingDir = "/home/nonroot"
	distrolessEnv               = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
	}
)

// finalStageMirrored are the instructions src/testbed/ociimage reproduces;
// any other one in the final stage would change the image without changing
// the OCI archive.
var finalStageMirrored = []string{"FROM", "ARG", "LABEL", "COPY", "USER", "ENTRYPOINT", "CMD"}

// TestOCIImageMatchesDockerfile builds the image as `make image-oci` does
// (without Docker) and checks it against the Dockerfile's final stage: the
// same entrypoint, cmd, user, working directory, env, labels and binary
// path, named as the chart pulls it by default.
func TestOCIImageMatchesDockerfile(t *testing.T) {
	makeTool, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make is needed to build the OCI image: %v", err)
	}
	final := readDockerfile(t).final()
	for _, in := range final {
		if !slices.Contains(finalStageMirrored, in.cmd) {
			t.Errorf("line %d: %s in the final stage: src/testbed/ociimage does not reproduce it; mirror it there and in this test", in.line, in.cmd)
		}
	}
	if img, _ := fromImage(final[0]); !strings.HasPrefix(img, "gcr.io/distroless/static-debian12:nonroot@") {
		t.Errorf("final stage FROM %s: src/testbed/ociimage stands in for gcr.io/distroless/static-debian12:nonroot", img)
	}

	outDir := t.TempDir()
	const revision = "0123456789abcdef0123456789abcdef01234567"
	build := exec.Command(makeTool, "image-oci", "OCI_DIR="+outDir, "REVISION="+revision)
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image-oci: %v\n%s", err, out)
	}
	img := readOCIArchive(t, filepath.Join(outDir, "vault-kms-plugin-"+runtime.GOARCH+".oci.tar"))
	cfg := img.config.Config
	ver := strings.TrimSpace(readFile(t, "VERSION"))

	// Named as the chart's default image: repository:appVersion.
	c := loadChart(t)
	wantRef := c.Values["image"].(map[string]any)["repository"].(string) + ":" + c.Metadata.AppVersion
	for _, key := range []string{"org.opencontainers.image.ref.name", "io.containerd.image.name"} {
		if got := img.annotations[key]; got != wantRef {
			t.Errorf("index.json %s = %q, want the chart's default image %q", key, got, wantRef)
		}
	}
	if img.config.OS != "linux" || img.config.Architecture != runtime.GOARCH {
		t.Errorf("image platform %s/%s, want linux/%s", img.config.OS, img.config.Architecture, runtime.GOARCH)
	}

	entrypoint, cmd := execForm(t, final)
	for _, tc := range []struct {
		what      string
		oci, want any
	}{
		{"Entrypoint (ENTRYPOINT)", cfg.Entrypoint, entrypoint},
		{"Cmd (CMD)", cfg.Cmd, cmd},
		{"User (USER)", cfg.User, only(t, final, "USER").args},
		{"WorkingDir (the base's)", cfg.WorkingDir, distrolessNonrootWorkingDir},
		{"Env (the base's)", cfg.Env, distrolessEnv},
		{"Labels (LABEL)", cfg.Labels, dockerfileLabels(t, final, map[string]string{"VERSION": ver, "REVISION": revision})},
	} {
		if diff := cmp.Diff(tc.want, tc.oci); diff != "" {
			t.Errorf("OCI config %s differs from the Dockerfile's final stage (-Dockerfile +OCI):\n%s", tc.what, diff)
		}
	}

	// The binary where the COPY puts it, root-owned and executable, in the
	// top layer as COPY adds it; stamped with VERSION as make build stamps.
	copyArgs := strings.Fields(only(t, final, "COPY").args)
	dest := copyArgs[len(copyArgs)-1]
	bin, ok := img.file(strings.TrimPrefix(dest, "/"))
	top := img.layers[len(img.layers)-1]
	switch {
	case !ok:
		t.Errorf("the OCI image has no %s (the Dockerfile's COPY destination)", dest)
	case bin.hdr.Typeflag != tar.TypeReg || bin.hdr.Mode != 0o755 || bin.hdr.Uid != 0 || bin.hdr.Gid != 0:
		t.Errorf("%s: type %c mode %#o owner %d:%d, want a 0755 root-owned file", dest, bin.hdr.Typeflag, bin.hdr.Mode, bin.hdr.Uid, bin.hdr.Gid)
	case len(top) != 1 || top[0].hdr.Name != bin.hdr.Name:
		t.Errorf("the top layer holds %d files, want only %s", len(top), dest)
	}
	if !slices.Equal(entrypoint, []string{dest}) {
		t.Errorf("ENTRYPOINT %q does not run the copied %s", entrypoint, dest)
	}
	if ok {
		binPath := filepath.Join(t.TempDir(), "vault-kms-plugin")
		if err := os.WriteFile(binPath, bin.body, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(binPath, "version").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != ver {
			t.Errorf("the image's binary says %q (%v), want the version %s", out, err, ver)
		}
	}

	// USER resolves in the image as distroless resolves it: a named account
	// whose home is the working directory, owned by it, and a CA bundle
	// where SSL_CERT_FILE points.
	uid, gid, _ := strings.Cut(cfg.User, ":")
	passwd, _ := img.file("etc/passwd")
	group, _ := img.file("etc/group")
	home := ""
	for _, l := range strings.Split(string(passwd.body), "\n") {
		if f := strings.Split(l, ":"); len(f) == 7 && f[2] == uid && f[3] == gid {
			home = f[5]
		}
	}
	if home != cfg.WorkingDir {
		t.Errorf("uid %s's home in the image's /etc/passwd is %q, want the working directory %s:\n%s", uid, home, cfg.WorkingDir, passwd.body)
	}
	if !regexp.MustCompile(`(?m)^\w+:x:` + gid + `:`).Match(group.body) {
		t.Errorf("gid %s is not in the image's /etc/group:\n%s", gid, group.body)
	}
	if dir, ok := img.file(strings.TrimPrefix(cfg.WorkingDir, "/") + "/"); !ok || strconv.Itoa(dir.hdr.Uid) != uid {
		t.Errorf("the working directory %s is missing or not owned by uid %s", cfg.WorkingDir, uid)
	}
	if ca, ok := img.file("etc/ssl/certs/ca-certificates.crt"); !ok || !bytes.Contains(ca.body, []byte("-----BEGIN CERTIFICATE-----")) {
		t.Error("the image has no CA bundle at /etc/ssl/certs/ca-certificates.crt")
	}

	// Without overrides the archive lands where the e2e imports it from.
	dry := exec.Command(makeTool, "-n", "image-oci")
	dry.Dir = repoRoot(t)
	out, err := dry.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n image-oci: %v\n%s", err, out)
	}
	if want := "-out " + filepath.Join(repoRoot(t), "bin", "image", "vault-kms-plugin-"+runtime.GOARCH+".oci.tar"); !strings.Contains(string(out), want) {
		t.Errorf("make -n image-oci lacks %q:\n%s", want, out)
	}
}

// dockerfileLabels parses a stage's LABEL instructions (key="value" pairs,
// double-quoted or bare) with ${NAME} and $NAME replaced from args.
func dockerfileLabels(t *testing.T, stage []instruction, args map[string]string) map[string]string {
	t.Helper()
	labels := map[string]string{}
	pair := regexp.MustCompile(`^\s*([\w.-]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))`)
	for _, in := range stage {
		if in.cmd != "LABEL" {
			continue
		}
		for rest := in.args; strings.TrimSpace(rest) != ""; {
			m := pair.FindStringSubmatchIndex(rest)
			if m == nil {
				t.Fatalf("line %d: cannot parse LABEL at %q", in.line, rest)
			}
			key, value := rest[m[2]:m[3]], ""
			if m[4] >= 0 {
				value = regexp.MustCompile(`\\(.)`).ReplaceAllString(rest[m[4]:m[5]], "$1")
			} else {
				value = rest[m[6]:m[7]]
			}
			labels[key] = os.Expand(value, func(name string) string {
				v, ok := args[name]
				if !ok {
					t.Fatalf("line %d: LABEL %s uses $%s, which the test does not set", in.line, key, name)
				}
				return v
			})
			rest = rest[m[1]:]
		}
	}
	return labels
}

func TestDockerfileLabels(t *testing.T) {
	stage := parseDockerfile(t, `FROM scratch
LABEL a="x y" \
      b=bare c="say \"hi\"" d="${VERSION}-$REVISION"
LABEL e=""
`)
	got := dockerfileLabels(t, stage, map[string]string{"VERSION": "1.0", "REVISION": "abc"})
	want := map[string]string{"a": "x y", "b": "bare", "c": `say "hi"`, "d": "1.0-abc", "e": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
}
