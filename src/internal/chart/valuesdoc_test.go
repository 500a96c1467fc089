package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// The comment convention of values.yaml, which the README's values table is
// generated from:
//
//	# -- (type) Description, on as many comment lines as it needs.
//	# It ends at the key below it.
//	key: default
//
// The `(type)` is optional: it is needed only where the default does not say
// the type (null). A key needs a description unless a key above it in the
// tree has one: a documented map (resources, nodeSelector) is one row, and
// the keys under it are its default. A key that has no default is written
// commented out under its description:
//
//	# -- (string) Vault's URL. Required, no default.
//	# addr: https://vault.example.com:8200
//
// and gets a row saying it is unset, with the example.

// valueDoc is one row of the values table.
type valueDoc struct {
	key         string // dotted path, e.g. auth.approle.roleId
	typ         string
	def         string // compact JSON of the default, or the example of an unset key
	unset       bool   // a commented-out key: no default
	description string
	line        int // where its description starts in values.yaml, for the order of rows
}

var (
	docStart     = regexp.MustCompile(`^#\s?--(?:\s+|$)(?:\(([A-Za-z][\w\[\]./ ]*)\)\s*)?(.*)$`)
	commentedKey = regexp.MustCompile(`^#\s?([A-Za-z][\w.-]*):(?:\s|$)`)
)

// commentBlock is a run of comment lines at one indentation, with nothing
// else between them.
type commentBlock struct {
	first, last int // 0-based line indexes
	indent      int
}

// describeValues reads values.yaml's documented keys, in the order of the
// file. It fails on a key that needs a description and has none, and on a
// `# --` description that documents no key.
func describeValues(src []byte) ([]valueDoc, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, fmt.Errorf("parse values.yaml: %w", err)
	}
	top := &yaml.Node{Kind: yaml.MappingNode} // a file of comments only
	if len(root.Content) > 0 {
		top = root.Content[0]
	}
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("values.yaml: the top level is not a map")
	}
	lines := strings.Split(string(src), "\n")
	used := map[int]bool{} // first lines of the comment blocks a key took
	var keys []keyAt
	var docs []valueDoc
	var problems []string
	var walk func(m *yaml.Node, prefix string, documented bool)
	walk = func(m *yaml.Node, prefix string, documented bool) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			keys = append(keys, keyAt{line: k.Line - 1, indent: k.Column - 1, path: path})
			blk, ok := blockAbove(lines, k.Line-1, k.Column-1)
			var d *valueDoc
			if ok {
				d2, err := docFromBlock(lines, blk)
				if err != nil {
					problems = append(problems, fmt.Sprintf("values.yaml:%d: %s: %v", k.Line, path, err))
				} else if d2 != nil {
					used[blk.first] = true
					d = d2
				}
			}
			isMap := v.Kind == yaml.MappingNode && len(v.Content) > 0
			switch {
			case d != nil:
				d.key = path
				typ, err := typeOf(v)
				if d.typ == "" {
					if err != nil {
						problems = append(problems, fmt.Sprintf("values.yaml:%d: %s: %v: write it as `# -- (type) ...`", k.Line, path, err))
					}
					d.typ = typ
				}
				def, err := compactJSON(v)
				if err != nil {
					problems = append(problems, fmt.Sprintf("values.yaml:%d: %s: %v", k.Line, path, err))
				}
				d.def = def
				docs = append(docs, *d)
			case !isMap && !documented:
				problems = append(problems, fmt.Sprintf("values.yaml:%d: %s has no description: put a `# -- description` comment line right above it", k.Line, path))
			}
			if isMap {
				walk(v, path, documented || d != nil)
			}
		}
	}
	walk(top, "", false)

	// The rest of the `# --` blocks: keys written commented out, or strays.
	for _, blk := range commentBlocks(lines) {
		if used[blk.first] {
			continue
		}
		if !isDocStart(lines[blk.first]) {
			continue
		}
		u, at, err := unsetKey(lines, blk, keys)
		if err != nil {
			problems = append(problems, fmt.Sprintf("values.yaml:%d: %v", blk.first+1, err))
			continue
		}
		d, err := docFromBlock(lines, commentBlock{first: blk.first, last: at - 1, indent: blk.indent})
		if err != nil {
			problems = append(problems, fmt.Sprintf("values.yaml:%d: %s: %v", blk.first+1, u.key, err))
			continue
		}
		u.typ, u.description, u.line = d.typ, d.description, d.line
		if d.typ == "" {
			problems = append(problems, fmt.Sprintf("values.yaml:%d: %s is unset, so its type must be written: `# -- (type) ...`", blk.first+1, u.key))
		}
		docs = append(docs, u)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	sort.SliceStable(docs, func(i, j int) bool { return docs[i].line < docs[j].line })
	return docs, nil
}

// keyAt is where a key of the values tree is written.
type keyAt struct {
	line, indent int
	path         string
}

// blockAbove is the comment block that ends right above line (0-based) at
// the key's indentation. A `# --` line starts a block.
func blockAbove(lines []string, line, indent int) (commentBlock, bool) {
	first := -1
	for i := line - 1; i >= 0 && isCommentAt(lines[i], indent); i-- {
		first = i
		if isDocStart(lines[i]) {
			break
		}
	}
	if first < 0 {
		return commentBlock{}, false
	}
	return commentBlock{first: first, last: line - 1, indent: indent}, true
}

func isDocStart(line string) bool { return docStart.MatchString(strings.TrimSpace(line)) }

func isCommentAt(line string, indent int) bool {
	trimmed := strings.TrimLeft(line, " ")
	return strings.HasPrefix(trimmed, "#") && len(line)-len(trimmed) == indent
}

// commentBlocks lists every comment block of the file; a `# --` line
// starts a new one.
func commentBlocks(lines []string) []commentBlock {
	var out []commentBlock
	for i := 0; i < len(lines); {
		trimmed := strings.TrimLeft(lines[i], " ")
		if !strings.HasPrefix(trimmed, "#") {
			i++
			continue
		}
		indent := len(lines[i]) - len(trimmed)
		j := i
		for j+1 < len(lines) && isCommentAt(lines[j+1], indent) && !isDocStart(lines[j+1]) {
			j++
		}
		out = append(out, commentBlock{first: i, last: j, indent: indent})
		i = j + 1
	}
	return out
}

// docFromBlock reads the description a comment block gives, from its last
// `# --` line on: nil when it has none. Free comments above that line are
// not part of it.
func docFromBlock(lines []string, blk commentBlock) (*valueDoc, error) {
	start := -1
	for i := blk.first; i <= blk.last; i++ {
		if isDocStart(lines[i]) {
			start = i
		}
	}
	if start < 0 {
		return nil, nil
	}
	m := docStart.FindStringSubmatch(strings.TrimSpace(lines[start]))
	d := &valueDoc{typ: strings.TrimSpace(m[1]), line: start}
	text := []string{strings.TrimSpace(m[2])}
	for i := start + 1; i <= blk.last; i++ {
		text = append(text, commentText(lines[i]))
	}
	d.description = strings.Join(strings.Fields(strings.Join(text, " ")), " ")
	if d.description == "" {
		return nil, fmt.Errorf("the `# --` line has no description after it")
	}
	return d, nil
}

// commentText is a comment line without its indentation and `# `.
func commentText(line string) string {
	s := strings.TrimPrefix(strings.TrimLeft(line, " "), "#")
	return strings.TrimPrefix(s, " ")
}

// unsetKey reads a key written commented out at the end of a `# --` block:
// the lines from `# key:` on, uncommented, are a YAML example of it.
func unsetKey(lines []string, blk commentBlock, keys []keyAt) (_ valueDoc, at int, _ error) {
	at = -1
	for i := blk.first + 1; i <= blk.last; i++ {
		if commentedKey.MatchString(strings.TrimSpace(lines[i])) {
			at = i
		}
	}
	if at < 0 {
		return valueDoc{}, at, fmt.Errorf("a `# --` description that documents no key: put it right above its key, or end it with the key commented out (`# key: example`) when the key has no default")
	}
	var example []string
	for i := at; i <= blk.last; i++ {
		example = append(example, commentText(lines[i]))
	}
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(strings.Join(example, "\n")), &node); err != nil || len(node.Content) == 0 || len(node.Content[0].Content) != 2 {
		return valueDoc{}, at, fmt.Errorf("the commented-out key at line %d is not one YAML key with its example value (%v)", at+1, err)
	}
	k, v := node.Content[0].Content[0], node.Content[0].Content[1]
	def, err := compactJSON(v)
	if err != nil {
		return valueDoc{}, at, fmt.Errorf("%s: %w", k.Value, err)
	}
	// The key's parent is the nearest key above it written further left.
	path := k.Value
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].line < blk.first && keys[i].indent < blk.indent {
			path = keys[i].path + "." + k.Value
			break
		}
	}
	return valueDoc{key: path, def: def, unset: true}, at, nil
}

// typeOf names the type of a default as the table shows it.
func typeOf(v *yaml.Node) (string, error) {
	switch v.Kind {
	case yaml.MappingNode:
		return "object", nil
	case yaml.SequenceNode:
		return "list", nil
	case yaml.AliasNode:
		return typeOf(v.Alias)
	}
	switch v.ShortTag() {
	case "!!str":
		return "string", nil
	case "!!int":
		return "int", nil
	case "!!bool":
		return "bool", nil
	case "!!float":
		return "float", nil
	}
	return "", fmt.Errorf("the default %s says no type", v.ShortTag())
}

// compactJSON writes a default on one line, keeping the order of map keys
// as values.yaml has them.
func compactJSON(v *yaml.Node) (string, error) {
	var buf bytes.Buffer
	if err := writeJSON(&buf, v); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func writeJSON(buf *bytes.Buffer, v *yaml.Node) error {
	switch v.Kind {
	case yaml.AliasNode:
		return writeJSON(buf, v.Alias)
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i+1 < len(v.Content); i += 2 {
			if i > 0 {
				buf.WriteByte(',')
			}
			k, _ := json.Marshal(v.Content[i].Value)
			buf.Write(k)
			buf.WriteByte(':')
			if err := writeJSON(buf, v.Content[i+1]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, item := range v.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, item); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	}
	var scalar any
	if err := v.Decode(&scalar); err != nil {
		return fmt.Errorf("decode the default at line %d: %w", v.Line, err)
	}
	out, err := json.Marshal(scalar)
	if err != nil {
		return fmt.Errorf("the default at line %d as JSON: %w", v.Line, err)
	}
	buf.Write(out)
	return nil
}

// valuesTable renders the rows as a Markdown table.
func valuesTable(docs []valueDoc) string {
	var b strings.Builder
	b.WriteString("| key | type | default | description |\n| --- | --- | --- | --- |\n")
	for _, d := range docs {
		def := codeSpan(d.def)
		if d.unset {
			def = "unset; e.g. " + def
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", d.key, d.typ, def, cell(d.description))
	}
	return b.String()
}

// codeSpan puts s in a Markdown code span, with a fence longer than any run
// of backticks in it.
func codeSpan(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + cell(s) + fence
}

// cell escapes what would end a table cell; GitHub's tables need it even
// inside code spans.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
