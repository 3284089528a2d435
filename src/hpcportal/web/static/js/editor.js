// A small script editor: the <textarea> stays the real input (labelled, keyboard and
// screen-reader friendly); a <pre> under it shows the same text highlighted by a
// tiny shell tokenizer that knows #SBATCH directives and Jinja2 {{ }} / {% %} tags.

const KEYWORDS = new Set(
  (
    "if then else elif fi for while until do done case esac in function return exit " +
    "export local set unset source module srun sbatch mpirun apptainer singularity"
  ).split(" "),
);

/** Split a script into [kind, text] pieces; kind is null for plain text. */
export function tokenize(source) {
  const tokens = [];
  let i = 0;
  let lineStart = true;
  const push = (kind, text) => {
    if (!text) return;
    const last = tokens[tokens.length - 1];
    if (last && last[0] === kind) last[1] += text;
    else tokens.push([kind, text]);
  };
  while (i < source.length) {
    const c = source[i];
    const rest = source.slice(i, i + 8);
    if (c === "\n") {
      push(null, c);
      i += 1;
      lineStart = true;
      continue;
    }
    if (lineStart && /^#SBATCH/i.test(rest)) {
      const end = source.indexOf("\n", i);
      const stop = end === -1 ? source.length : end;
      push("directive", source.slice(i, stop));
      i = stop;
      continue;
    }
    if (c === "{" && (source[i + 1] === "{" || source[i + 1] === "%")) {
      const close = source[i + 1] === "{" ? "}}" : "%}";
      const end = source.indexOf(close, i + 2);
      const stop = end === -1 ? source.length : end + 2;
      push("template", source.slice(i, stop));
      i = stop;
      lineStart = false;
      continue;
    }
    if (c === "#" && (i === 0 || /\s/.test(source[i - 1]))) {
      const end = source.indexOf("\n", i);
      const stop = end === -1 ? source.length : end;
      push("comment", source.slice(i, stop));
      i = stop;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < source.length && source[j] !== c) j += c === '"' && source[j] === "\\" ? 2 : 1;
      push("string", source.slice(i, j + 1));
      i = j + 1;
      lineStart = false;
      continue;
    }
    if (c === "$") {
      const match = /^\$(\{[^}\n]*\}?|\(\(?|[A-Za-z_][A-Za-z0-9_]*|[0-9@#?*$!-])/.exec(
        source.slice(i, i + 200),
      );
      const text = match ? match[0] : "$";
      push("variable", text);
      i += text.length;
      lineStart = false;
      continue;
    }
    const word = /^[A-Za-z_][A-Za-z0-9_-]*|^[0-9]+(\.[0-9]+)?/.exec(source.slice(i, i + 200));
    if (word) {
      const text = word[0];
      const kind = /^[0-9]/.test(text) ? "number" : KEYWORDS.has(text) ? "keyword" : null;
      push(kind, text);
      i += text.length;
      lineStart = false;
      continue;
    }
    push(null, c);
    if (!/[ \t]/.test(c)) lineStart = false;
    i += 1;
  }
  return tokens;
}

function render(code, text) {
  const fragment = document.createDocumentFragment();
  for (const [kind, piece] of tokenize(text)) {
    if (!kind) {
      fragment.append(document.createTextNode(piece));
    } else {
      const span = document.createElement("span");
      span.className = `tok-${kind}`;
      span.textContent = piece;
      fragment.append(span);
    }
  }
  // A trailing newline keeps the last line as tall as the textarea's.
  fragment.append(document.createTextNode("\n "));
  code.replaceChildren(fragment);
}

/** Wire one [data-editor] box; returns helpers to read and replace its text. */
export function attachEditor(box) {
  const textarea = box.querySelector("textarea");
  const pre = box.querySelector(".editor-highlight");
  const code = pre.querySelector("code");
  let frame = 0;
  const update = () => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      render(code, textarea.value);
      pre.scrollTop = textarea.scrollTop;
    });
  };
  textarea.addEventListener("input", update);
  textarea.addEventListener("scroll", () => {
    pre.scrollTop = textarea.scrollTop;
  });
  render(code, textarea.value);
  return {
    textarea,
    get value() {
      return textarea.value;
    },
    set value(text) {
      textarea.value = text;
      update();
    },
    setReadOnly(readOnly) {
      textarea.readOnly = readOnly;
    },
  };
}
